"""Pre-compressed bodies on every fast-path document route (features whole and filtered, one
feature, the signed config snapshot, their long-polls): gzip served exactly when
``Accept-Encoding`` allows it (RFC 9110 12.5.3), with its own strong tag, either tag answering
304, the gzip bytes inflating to exactly the plain ones and built once per revision."""

from __future__ import annotations

import gzip
import http.client
import threading
from urllib.parse import urlsplit

import pytest

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.core.fastpath import encoding
from apps.core.fastpath.encoding import choose_coding, coded_tag
from apps.flags.models import Flag
from apps.flags.services import flag_create, flag_toggle
from apps.tenancy.models import Environment, Tenant

from ..waiting import eventually

ACTOR = SystemActor("test")
SPEC = {"Unleash-Client-Spec": "5.0.0"}
ROUTES = [
    "/api/client/features",
    "/api/client/features?namePrefix=app.",
    "/api/client/features/app.checkout",
    "/api/runtime/v1/config",
]
# Accept-Encoding values (None: no header at all) that must get gzip, and that must not.
GZIP_WANTED = [
    "gzip",
    "gzip, deflate",
    "GZIP;Q=0.8",
    "x-gzip",
    "*",
    "deflate, gzip;q=0.5",
    "identity;q=0, gzip",
    "gzip, identity",
    "gzip;q=1.000, identity;q=0.5",
]
PLAIN_WANTED: list[str | None] = [
    None,
    "",
    "identity",
    "gzip;q=0",
    "gzip;q=0.000, *",
    "*;q=0, identity",
    "br, deflate",
    "gzip;q=0.5, identity",
    "gzip;q=2",  # a weight out of range: the header is malformed, ignored
    "gzip q=1",
]


@pytest.mark.parametrize("header", GZIP_WANTED)
def test_choose_coding__gzip_acceptable_and_preferred__gzip(header: str) -> None:
    assert choose_coding(header, gzip_available=True) == "gzip"
    # No gzip form (a body it would not shrink): plain bytes whatever is asked.
    assert choose_coding(header, gzip_available=False) == "identity"


@pytest.mark.parametrize("header", PLAIN_WANTED)
def test_choose_coding__gzip_refused_or_no_header__identity(header: str | None) -> None:
    assert choose_coding(header, gzip_available=True) == "identity"


def test_coded_tag__differs_per_coding_strong_and_weak() -> None:
    assert coded_tag('"abc"', "gzip") == '"abc-gzip"'
    assert coded_tag('W/"abc"', "gzip") == 'W/"abc-gzip"'
    assert coded_tag('"abc"', "identity") == '"abc"'


@pytest.fixture
def environment(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="development")


@pytest.fixture
def flag(environment: Environment) -> Flag:
    # Constraints enough that even the single-feature view shrinks when gzip-compressed.
    constraint = {
        "contextName": "userId",
        "operator": "IN",
        "values": [f"user-{i}" for i in range(40)],
    }
    return flag_create(
        actor=ACTOR,
        environment=environment,
        name="app.checkout",
        enabled=True,
        strategies=[{"name": "default", "constraints": [constraint]}],
    )


@pytest.fixture
def token(environment: Environment, flag: Flag) -> str:
    _, raw = runtime_token_create(
        actor=ACTOR, tenant=environment.tenant, environment=environment, name="compression"
    )
    return raw


def _raw(
    base: str, path: str, token: str, *, method: str = "GET", **headers: str | None
) -> tuple[int, dict[str, str], bytes]:
    """One request whose headers are exactly these (``http.client`` adds no Accept-Encoding
    of its own here) and the body as it crossed the wire, not inflated."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        sent = {"Authorization": token, **SPEC, **headers}
        for name, value in sent.items():
            if value is not None:
                connection.putheader(name.replace("_", "-"), value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def _plain(base: str, route: str, token: str) -> tuple[dict[str, str], bytes]:
    status, headers, body = _raw(base, route, token)
    assert status == 200, body
    assert "content-encoding" not in headers
    return headers, body


@pytest.mark.parametrize("route", ROUTES)
def test_route__gzip_accepted__gzip_bytes_inflate_to_exactly_the_plain_bytes(
    asgi_server: str, token: str, route: str
) -> None:
    plain_headers, plain = _plain(asgi_server, route, token)

    for header in GZIP_WANTED:
        status, headers, body = _raw(asgi_server, route, token, **{"Accept-Encoding": header})
        assert status == 200, header
        assert headers["content-encoding"] == "gzip", header
        assert int(headers["content-length"]) == len(body) < len(plain), header
        assert "Accept-Encoding" in headers["vary"], header
        assert gzip.decompress(body) == plain, header
        assert headers["etag"] == coded_tag(plain_headers["etag"], "gzip") != plain_headers["etag"]
        assert headers["x-revision"] == plain_headers["x-revision"]


@pytest.mark.parametrize("route", ROUTES)
def test_route__no_header_or_gzip_refused__plain_bytes(
    asgi_server: str, token: str, route: str
) -> None:
    _, plain = _plain(asgi_server, route, token)

    for header in PLAIN_WANTED:
        status, headers, body = _raw(asgi_server, route, token, **{"Accept-Encoding": header})
        assert status == 200, header
        assert "content-encoding" not in headers, header
        assert body == plain, header
        assert int(headers["content-length"]) == len(plain), header
        assert "Accept-Encoding" in headers["vary"], header


# If-None-Match built from (plain tag, gzip tag) of the current revision.
TAG_FORMS = [
    ("plain", lambda plain, packed: plain),
    ("gzip", lambda plain, packed: packed),
    ("weak plain", lambda plain, packed: f"W/{plain}"),
    ("weak gzip", lambda plain, packed: f"W/{packed}"),
    ("list, gzip second", lambda plain, packed: f'"stale", {packed}'),
    ("list, weak plain last", lambda plain, packed: f'"a", W/"b", W/{plain}'),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("accept", ["gzip", None])
def test_route__either_codings_tag_of_the_current_revision__304(
    asgi_server: str, token: str, route: str, accept: str | None
) -> None:
    plain_tag = _plain(asgi_server, route, token)[0]["etag"]
    gzip_tag = _raw(asgi_server, route, token, **{"Accept-Encoding": "gzip"})[1]["etag"]
    assert gzip_tag == coded_tag(plain_tag, "gzip")

    for name, build in TAG_FORMS:
        status, headers, body = _raw(
            asgi_server,
            route,
            token,
            **{"Accept-Encoding": accept, "If-None-Match": build(plain_tag, gzip_tag)},
        )
        assert (status, body) == (304, b""), name
        # the tag a 200 would carry for this request (RFC 9110 15.4.5)
        assert headers["etag"] == (gzip_tag if accept else plain_tag), name
        assert "Accept-Encoding" in headers["vary"], name

    status, _, _ = _raw(
        asgi_server, route, token, **{"Accept-Encoding": accept, "If-None-Match": '"stale-gzip"'}
    )
    assert status == 200


@pytest.mark.parametrize("route", ROUTES)
def test_route_head__gzip_accepted__announces_the_gzip_length(
    asgi_server: str, token: str, route: str
) -> None:
    _, _, packed = _raw(asgi_server, route, token, **{"Accept-Encoding": "gzip"})

    status, headers, body = _raw(
        asgi_server, route, token, method="HEAD", **{"Accept-Encoding": "gzip"}
    )

    assert (status, body) == (200, b"")
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(packed)


@pytest.mark.parametrize("route", ROUTES)
def test_long_poll__new_revision__answered_in_gzip_when_accepted(
    asgi_server: str, token: str, flag: Flag, route: str
) -> None:
    gzip_tag = _raw(asgi_server, route, token, **{"Accept-Encoding": "gzip"})[1]["etag"]
    separator = "&" if "?" in route else "?"
    result: dict[str, tuple[int, dict[str, str], bytes]] = {}
    poller = threading.Thread(
        target=lambda: result.setdefault(
            "r",
            _raw(
                asgi_server,
                f"{route}{separator}wait=15",
                token,
                **{"Accept-Encoding": "gzip, deflate", "If-None-Match": gzip_tag},
            ),
        )
    )
    poller.start()
    threading.Event().wait(0.5)  # let the poll park before the change

    flag_toggle(actor=ACTOR, flag=flag, enabled=False)
    poller.join(timeout=25)

    status, headers, body = result["r"]
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["etag"] != gzip_tag
    assert int(headers["content-length"]) == len(body)
    assert b'"enabled":false' in gzip.decompress(body).replace(b" ", b"")


def test_gzip_forms__built_once_per_revision_never_per_request(
    asgi_server: str, token: str, flag: Flag
) -> None:
    before = encoding.compressions.copy()
    for _ in range(4):
        for route in ROUTES:
            for accept in ("gzip", None, "identity"):
                assert _raw(asgi_server, route, token, **{"Accept-Encoding": accept})[0] == 200

    # One build per document: the features body (shared by its views) and the config
    # snapshot; one per view asked for (the filtered list, the single feature).
    after_first = encoding.compressions.copy()
    assert after_first["body"] - before["body"] == 2
    assert after_first["view"] - before["view"] == 2

    flag_toggle(actor=ACTOR, flag=flag, enabled=False)
    revision = str(Environment.objects.get(pk=flag.environment_id).revision)
    for route in ROUTES:  # each answers the new revision (however soon the event arrived)
        assert eventually(
            lambda route=route: _raw(asgi_server, route, token)[1]["x-revision"] == revision
        )
    for _ in range(3):
        for route in ROUTES:
            _raw(asgi_server, route, token, **{"Accept-Encoding": "gzip"})

    assert encoding.compressions["body"] - after_first["body"] == 2
    assert encoding.compressions["view"] - after_first["view"] == 2
