"""One runtime token cannot grow the SDK instance table without bound (issue 9, item 6, the
kind the heartbeat fix closed for runtime instances): new (app name, instance id) pairs are
limited per token and minute on ``/api/client/register`` (429 with Retry-After) and on
``/api/client/metrics`` (counts kept, no new instance row); known instances and other tokens
are unaffected."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.flags.models import FlagUsage, SdkInstance
from apps.tenancy.models import Environment

from .conftest import make_flag, make_token

pytestmark = pytest.mark.django_db
LIMIT = 3


@pytest.fixture(autouse=True)
def limit(settings: Any) -> None:
    settings.RUNTIME_NEW_INSTANCES_PER_MINUTE = LIMIT


def _register(token: str, *, app: str = "web", instance: str = "web-1") -> Any:
    body = {
        "appName": app,
        "instanceId": instance,
        "sdkVersion": "unleash-client-python:6.0.0",
        "strategies": ["default"],
        "started": "2026-11-23T10:00:00Z",
        "interval": 15000,
    }
    return APIClient().post("/api/client/register", body, format="json", HTTP_AUTHORIZATION=token)


def _metrics(token: str, *, app: str, instance: str) -> Any:
    body = {
        "appName": app,
        "instanceId": instance,
        "bucket": {
            "start": "2026-11-23T10:05:00Z",
            "stop": "2026-11-23T10:06:00Z",
            "toggles": {"a": {"yes": 2, "no": 1}},
        },
    }
    return APIClient().post("/api/client/metrics", body, format="json", HTTP_AUTHORIZATION=token)


@pytest.mark.parametrize(
    "new_ones",
    [
        [("web", "pod-1"), ("web", "pod-2"), ("web", "pod-3"), ("web", "pod-4")],
        [("a", "x"), ("b", "x"), ("c", "x"), ("d", "x")],  # new app names count too
        [("web", "1"), ("api", "1"), ("web", "2"), ("worker", "9")],
    ],
)
def test_register__new_instances_beyond_the_limit__429_known_ones_and_other_tokens_pass(
    development: Environment, new_ones: list[tuple[str, str]]
) -> None:
    token, other = make_token(development), make_token(development)
    answers = [_register(token, app=a, instance=i).status_code for a, i in new_ones]

    assert answers == [202] * LIMIT + [429]
    refused = _register(token, app="late", instance="late")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert "new SDK instances" in refused.json()["detail"]
    assert SdkInstance.objects.count() == LIMIT
    # re-registering a known instance is no growth
    assert _register(token, app=new_ones[0][0], instance=new_ones[0][1]).status_code == 202
    assert _register(other, app="other", instance="o-1").status_code == 202
    assert SdkInstance.objects.count() == LIMIT + 1


def test_metrics__new_instances_beyond_the_limit__counts_kept_no_new_rows(
    development: Environment,
) -> None:
    make_flag(development, "a")
    token = make_token(development)

    answers = [
        _metrics(token, app="web", instance=f"pod-{n}").status_code for n in range(LIMIT + 3)
    ]

    assert answers == [202] * (LIMIT + 3)
    assert SdkInstance.objects.count() == LIMIT
    usage = FlagUsage.objects.get(flag_name="a")
    assert (usage.yes, usage.no) == (2 * (LIMIT + 3), LIMIT + 3)
