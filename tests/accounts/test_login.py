"""Guessing passwords: the login page and the API token endpoint lock a username out per
client address after repeated failures (django-axes), the client address cannot be chosen
by the client through X-Forwarded-For, and the token endpoint never answers 500 when the
cache behind its throttle is down."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.api.login_throttle import LoginRateThrottle
from apps.accounts.client_ip import client_ip
from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent

from ..factories import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"  # what tests/factories.make_user sets
LIMIT = 5  # AXES_FAILURE_LIMIT's default


def _ui_login(username: str, password: str, **extra: str) -> Any:
    return Client().post("/login/", {"username": username, "password": password}, **extra)


def _api_login(username: str, password: str, **extra: str) -> Any:
    return APIClient().post(
        "/api/v1/auth/token/", {"username": username, "password": password}, format="json", **extra
    )


def _forwarded(n: int) -> dict[str, str]:
    """A header a client rotates to look like another machine each time."""
    return {"HTTP_X_FORWARDED_FOR": f"203.0.113.{n % 250 + 1}, 198.51.100.{n % 200 + 1}"}


@pytest.mark.parametrize("login", [_ui_login, _api_login], ids=["login-page", "token-api"])
@pytest.mark.parametrize("wrong", [LIMIT, LIMIT + 1, 60])
def test_login__wrong_password_repeatedly__right_one_then_refused_with_429(
    login: Any, wrong: int, operator: User
) -> None:
    for n in range(wrong):
        login(operator.username, f"guess-{n}", **_forwarded(n))

    response = login(operator.username, PASSWORD, **_forwarded(wrong))

    # locked out (or, after 30 tries a minute, throttled first): refused either way
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content or b"throttled" in response.content
    assert "_auth_user_id" not in response.wsgi_request.session
    assert b'"token"' not in response.content
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(action="user.api_token_rotated").exists()


def test_login_page__locked_out__says_so_in_the_page(operator: User) -> None:
    for n in range(LIMIT):
        _ui_login(operator.username, f"guess-{n}")

    response = _ui_login(operator.username, PASSWORD)

    html = response.content.decode()
    assert response.status_code == 429 and 'role="alert"' in html
    assert "Logins are refused for 15 minutes" in html and 'name="password"' in html


def test_login__failures_below_the_limit__right_password_logs_in_and_resets(
    operator: User,
) -> None:
    for n in range(LIMIT - 1):
        _ui_login(operator.username, f"guess-{n}")

    assert _ui_login(operator.username, PASSWORD).status_code == 302
    for n in range(LIMIT - 1):  # the success reset the count
        _ui_login(operator.username, f"again-{n}")
    assert _ui_login(operator.username, PASSWORD).status_code == 302


@pytest.mark.parametrize("login", [_ui_login, _api_login], ids=["login-page", "token-api"])
def test_login__locked_out__other_username_and_other_address_unaffected(
    login: Any, operator: User, viewer: User
) -> None:
    for n in range(LIMIT):
        login(operator.username, f"guess-{n}", REMOTE_ADDR="192.0.2.10")

    assert login(viewer.username, PASSWORD, REMOTE_ADDR="192.0.2.10").status_code in (200, 302)
    assert login(operator.username, PASSWORD, REMOTE_ADDR="192.0.2.11").status_code in (200, 302)


def test_token_api__rotating_forwarded_for__still_throttled_per_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(LoginRateThrottle, "THROTTLE_RATES", {"anon": "3/minute"})
    # a different unknown username each time, so only the throttle (not the lockout) answers
    statuses = [_api_login(f"nobody-{n}", "x", **_forwarded(n)).status_code for n in range(5)]

    assert statuses == [401, 401, 401, 429, 429]


@pytest.mark.parametrize(
    ("num_proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.9", "192.0.2.1"),
        (0, "", "192.0.2.1"),
        (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),
        (2, "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (1, "", "192.0.2.1"),
        (1, "not-an-address", "192.0.2.1"),
        (1, "2001:db8::7", "2001:db8::7"),
    ],
)
def test_client_ip__trusted_proxy_count__only_addresses_the_proxies_wrote(
    num_proxies: int, forwarded: str, expected: str, settings, rf
) -> None:  # type: ignore[no-untyped-def]
    settings.NUM_PROXIES = num_proxies
    meta = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = rf.get("/", REMOTE_ADDR="192.0.2.1", **meta)

    assert client_ip(request) == expected


def test_login__behind_one_trusted_proxy__lockout_follows_the_proxys_address(
    operator: User, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.NUM_PROXIES = 1
    for n in range(LIMIT):  # the client forges the left part; the proxy appends the real one
        _ui_login(operator.username, f"guess-{n}", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}, 198.51.100.7")

    locked = _ui_login(operator.username, PASSWORD, HTTP_X_FORWARDED_FOR="9.9.9.9, 198.51.100.7")
    elsewhere = _ui_login(operator.username, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.8")

    assert (locked.status_code, elsewhere.status_code) == (429, 302)


@pytest.mark.parametrize(
    ("backend", "location"),
    [
        ("django.core.cache.backends.redis.RedisCache", "redis://127.0.0.1:1/0"),
        ("django.core.cache.backends.redis.RedisCache", "redis://192.0.2.1:6379/0"),
        ("django_redis.cache.RedisCache", "redis://127.0.0.1:1/0"),
    ],
)
def test_token_api__cache_down__no_500_throttle_fails_open(
    backend: str, location: str, operator: User, settings
) -> None:  # type: ignore[no-untyped-def]
    options: dict[str, Any] = {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}
    if backend.startswith("django_redis"):
        pytest.importorskip("django_redis")
        # errors swallowed, None answered: how a deployment may configure its cache
        options = {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2, "IGNORE_EXCEPTIONS": True}
    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": location, "OPTIONS": options}}

    right = _api_login(operator.username, PASSWORD)
    wrong = _api_login(operator.username, "guess")

    assert right.status_code == 200 and right.json()["token"]
    assert wrong.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_login_page__over_the_asgi_server__locked_out_with_the_message(
    asgi_server: str,
) -> None:
    make_user(None, username="asgi-user")
    session = requests.Session()

    def attempt(password: str) -> requests.Response:
        page = session.get(f"{asgi_server}/login/", timeout=10).text
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert csrf is not None
        return session.post(
            f"{asgi_server}/login/",
            data={
                "username": "asgi-user",
                "password": password,
                "csrfmiddlewaretoken": csrf.group(1),
            },
            headers={"X-Forwarded-For": "203.0.113.5", "Referer": f"{asgi_server}/login/"},
            allow_redirects=False,
            timeout=10,
        )

    statuses = [attempt(f"guess-{n}").status_code for n in range(LIMIT)]
    final = attempt(PASSWORD)

    assert statuses == [200] * (LIMIT - 1) + [429]
    assert final.status_code == 429 and "Too many failed logins" in final.text
