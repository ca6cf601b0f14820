"""The unmodified Unleash Python SDK (``UnleashClient``: ``requests``, which asks for gzip by
default) reads the features document the server sent gzip-coded, and sees a change arriving
the same way. The server's side of the wire (``asgi_served``) shows gzip was sent."""

from __future__ import annotations

from apps.flags.services import flag_toggle
from apps.tenancy.models import Tenant

from ..conftest import Served
from ..flags.conftest import SYSTEM, make_flag, make_token
from .conftest import SdkFactory, wait_until


def _features_sent(served: list[Served]) -> list[Served]:
    return [s for s in served if s.path == "/api/client/features" and s.status == 200]


def test_python_sdk__features_sent_gzip__evaluates_them_and_sees_a_change(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory, asgi_served: list[Served]
) -> None:
    development = tenant.environments.get(slug="development")
    flag = make_flag(
        development,
        "app.checkout",
        strategies=[
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": "100", "stickiness": "userId", "groupId": "checkout"},
            }
        ],
    )
    make_flag(development, "app.search")
    client = sdk(make_token(development))

    assert client.is_enabled("app.checkout", {"userId": "u1"})
    assert client.is_enabled("app.search")
    first = _features_sent(asgi_served)
    assert first, "the SDK fetched no features"
    assert "gzip" in first[0].request_headers["accept-encoding"]
    assert first[0].headers["content-encoding"] == "gzip"
    gzip_tag = first[0].headers["etag"]
    assert gzip_tag.endswith('-gzip"')
    # The SDK polls with the tag it was given (the gzip one) and is told nothing changed.
    assert wait_until(
        lambda: any(
            s.path == "/api/client/features"
            and s.status == 304
            and s.request_headers.get("if-none-match") == gzip_tag
            for s in list(asgi_served)
        )
    )

    flag_toggle(actor=SYSTEM, flag=flag, enabled=False)

    assert wait_until(lambda: not client.is_enabled("app.checkout", {"userId": "u1"}))
    sent = _features_sent(asgi_served)
    assert len(sent) >= 2
    assert all(s.headers["content-encoding"] == "gzip" for s in sent)
