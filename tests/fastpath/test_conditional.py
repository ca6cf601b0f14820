"""RFC 9110 ``If-None-Match`` on every fast-path route (features, one feature, config, their
long-polls and the event stream): weak comparison, lists, ``*``, garbage ignored."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import requests

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.core.fastpath.conditional import parse_if_none_match
from apps.flags.models import Flag
from apps.flags.services import flag_create, flag_toggle
from apps.tenancy.models import Environment, Tenant

ACTOR = SystemActor("test")
SPEC = {"Unleash-Client-Spec": "5.0.0"}
# Every GET route of the fast path, the single-feature one by the flag's name.
ROUTES = [
    "/api/client/features",
    "/api/client/features?namePrefix=app.",
    "/api/client/features/app.checkout",
    "/api/runtime/v1/config",
]
# (If-None-Match built from the current tag, answered with 304?)
CONDITIONS: list[tuple[str, Callable[[str], str], bool]] = [
    ("exact", lambda tag: tag, True),
    ("weak", lambda tag: f"W/{tag}", True),
    ("list, match second", lambda tag: f'"stale-1", {tag}', True),
    ("list, weak match third", lambda tag: f'"a",W/"b" ,  W/{tag}', True),
    ("star", lambda tag: "*", True),
    ("list, no match", lambda tag: '"stale-1", W/"stale-2"', False),
    ("unquoted tag", lambda tag: tag.strip('"'), False),
    ("garbage", lambda tag: f"{tag} garbage", False),
    ("unclosed quote", lambda tag: tag[:-1], False),
    ("empty", lambda tag: "", False),
]


@pytest.mark.parametrize(
    ("header", "tag", "matches"),
    [
        ('W/"x"', '"x"', True),
        ('"x"', 'W/"x"', True),
        ('W/"x"', 'W/"x"', True),
        ('"a", "x"', '"x"', True),
        ('"a",,"x"', '"x"', True),
        ("*", '"anything"', True),
        ('"a", "b"', '"x"', False),
        ('"x', '"x"', False),
        ("x", '"x"', False),
        ('"x" "y"', '"x"', False),
        ('w/"x"', '"x"', False),  # the weak indicator is case-sensitive
        ("", '"x"', False),
        (None, '"x"', False),
    ],
)
def test_parse_if_none_match__rfc9110_weak_comparison(
    header: str | None, tag: str, matches: bool
) -> None:
    assert parse_if_none_match(header).matches(tag) is matches


@pytest.fixture
def production(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="development")


@pytest.fixture
def flag(production: Environment) -> Flag:
    return flag_create(
        actor=ACTOR,
        environment=production,
        name="app.checkout",
        enabled=True,
        strategies=[{"name": "default"}],
    )


@pytest.fixture
def token(production: Environment, flag: Flag) -> str:
    _, raw = runtime_token_create(
        actor=ACTOR, tenant=production.tenant, environment=production, name="conditional"
    )
    return raw


def _get(base: str, route: str, token: str, **headers: str) -> requests.Response:
    return requests.get(
        base + route, headers={"Authorization": token, **SPEC, **headers}, timeout=20
    )


@pytest.mark.parametrize("route", ROUTES)
def test_fastpath_route__if_none_match_forms__304_exactly_when_a_tag_matches(
    asgi_server: str, token: str, route: str
) -> None:
    first = _get(asgi_server, route, token)
    assert first.status_code == 200, first.text
    tag = first.headers["ETag"]

    for name, build, matches in CONDITIONS:
        response = _get(asgi_server, route, token, **{"If-None-Match": build(tag)})
        assert response.status_code == (304 if matches else 200), name
        assert response.headers["ETag"] == tag, name
        assert (response.content == b"") is matches, name
    head = requests.head(
        asgi_server + route,
        headers={"Authorization": token, **SPEC, "If-None-Match": f"W/{tag}"},
        timeout=10,
    )
    assert head.status_code == 304


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("form", ["weak", "list, match second", "star"])
def test_fastpath_long_poll__matching_tag_in_any_form__waits_for_the_change(
    asgi_server: str, token: str, flag: Flag, route: str, form: str
) -> None:
    tag = _get(asgi_server, route, token).headers["ETag"]
    build = {name: fn for name, fn, _ in CONDITIONS}[form]
    separator = "&" if "?" in route else "?"
    result: dict[str, requests.Response] = {}
    poller = threading.Thread(
        target=lambda: result.setdefault(
            "r",
            _get(asgi_server, f"{route}{separator}wait=15", token, **{"If-None-Match": build(tag)}),
        )
    )
    poller.start()
    threading.Event().wait(0.5)  # let the poll park before the change

    flag_toggle(actor=ACTOR, flag=flag, enabled=False)
    poller.join(timeout=25)

    # Answering at once (the old plain-string comparison) would have served the old body;
    # only a poll that waited sees the flag off.
    response = result["r"]
    assert response.status_code == 200
    assert response.headers["ETag"] != tag
    assert '"enabled":false' in response.text.replace(" ", "")


def test_fastpath_long_poll__other_flag_changes__single_feature_keeps_waiting(
    asgi_server: str, token: str, production: Environment
) -> None:
    """A revision that leaves the asked-for view unchanged does not end its long-poll."""
    route = "/api/client/features/app.checkout"
    tag = _get(asgi_server, route, token).headers["ETag"]
    result: dict[str, requests.Response] = {}
    poller = threading.Thread(
        target=lambda: result.setdefault(
            "r", _get(asgi_server, route + "?wait=2", token, **{"If-None-Match": f"W/{tag}"})
        )
    )
    poller.start()
    threading.Event().wait(0.3)
    flag_create(actor=ACTOR, environment=production, name="other", enabled=True, strategies=[])
    poller.join(timeout=15)

    assert result["r"].status_code == 304
    assert result["r"].headers["ETag"] == tag


def _stream(base: str, token: str, **headers: str) -> requests.Response:
    response = requests.get(
        base + "/api/client/streaming",
        headers={"Authorization": token, "Accept": "text/event-stream", **SPEC, **headers},
        stream=True,
        timeout=20,
    )
    assert response.status_code == 200
    return response


def _first_line_after_headers(response: requests.Response) -> str:
    for line in response.iter_lines(decode_unicode=True):
        if line:
            return str(line)
    raise AssertionError("the stream ended")


def test_fastpath_stream__if_none_match_forms__hydration_only_when_no_tag_matches(
    asgi_server: str, token: str
) -> None:
    first = _stream(asgi_server, token)
    tag = first.headers["ETag"]
    assert _first_line_after_headers(first) == "event: unleash-connected"
    first.close()

    for name, build, matches in CONDITIONS:
        response = _stream(asgi_server, token, **{"If-None-Match": build(tag)})
        line = _first_line_after_headers(response)
        response.close()
        assert line == (": not modified" if matches else "event: unleash-connected"), name


def test_fastpath_stream__tag_matched__next_change_arrives_as_update(
    asgi_server: str, token: str, flag: Flag
) -> None:
    tag = _stream(asgi_server, token).headers["ETag"]
    response = _stream(asgi_server, token, **{"If-None-Match": f'"x", W/{tag}'})
    lines = response.iter_lines(decode_unicode=True)
    assert next(line for line in lines if line) == ": not modified"

    flag_toggle(actor=ACTOR, flag=flag, enabled=False)

    assert next(line for line in lines if line) == "event: unleash-updated"
    response.close()
