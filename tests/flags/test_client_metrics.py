"""``POST /api/client/metrics`` and ``/register`` (issue 8 kind 2, issue 9 item 6): read
liberally where the meaning is plain, flag by flag (a wrong entry never costs the valid
rest), only flags that exist are counted, counts are bounded per bucket and totals can
never overflow their column."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.flags.models import FlagUsage, FlagVariantUsage, SdkInstance
from apps.flags.services import kill_switch_engage
from apps.flags.services.usage import COUNT_MAX
from apps.flags.validation import MAX_BUCKET_COUNT
from apps.tenancy.models import Environment

from .conftest import SYSTEM, make_flag, make_token

pytestmark = pytest.mark.django_db

START = "2026-11-23T10:05:00Z"


def _post(token: str, toggles: Any, *, app: str = "web", path: str = "metrics") -> Any:
    body: dict[str, Any] = (
        {
            "appName": app,
            "instanceId": "web-1",
            "bucket": {"start": START, "stop": "2026-11-23T10:06:00Z", "toggles": toggles},
        }
        if path == "metrics"
        else toggles
    )
    return APIClient().post(f"/api/client/{path}", body, format="json", HTTP_AUTHORIZATION=token)


def _usage() -> dict[str, tuple[int, int]]:
    return {u.flag_name: (u.yes, u.no) for u in FlagUsage.objects.all()}


@pytest.fixture
def token(development: Environment) -> str:
    for name in ("a", "b", "c"):
        make_flag(development, name)
    return make_token(development)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"yes": 3, "no": 1, "variants": None}, (3, 1)),  # the example
        ({"yes": 3, "no": None}, (3, 0)),
        ({"yes": 3}, (3, 0)),
        ({"yes": "3", "no": 2.0, "variants": {}}, (3, 2)),
        ({"yes": 3, "no": 1, "variants": {"blue": None}}, (3, 1)),
    ],
)
def test_metrics__nulls_and_plain_forms__read_as_none_and_the_bucket_kept(
    token: str, entry: dict[str, Any], expected: tuple[int, int]
) -> None:
    response = _post(token, {"a": entry, "b": {"yes": 1, "no": 1, "variants": {"blue": 1}}})

    assert response.status_code == 202, response.content
    assert _usage() == {"a": expected, "b": (1, 1)}
    assert dict(FlagVariantUsage.objects.values_list("flag_name", "count")) == {"b": 1}


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"yes": -1}, "bucket.toggles.a.yes"),
        ({"no": 1.5}, "bucket.toggles.a.no"),
        ({"yes": "many"}, "bucket.toggles.a.yes"),
        ({"yes": True}, "bucket.toggles.a.yes"),
        ({"yes": 2**63 - 1}, "bucket.toggles.a.yes"),
        ({"yes": MAX_BUCKET_COUNT + 1}, "bucket.toggles.a.yes"),
        ({"variants": {"blue": 2**70}}, "bucket.toggles.a.variants.blue"),
        ({"variants": ["blue"]}, "bucket.toggles.a.variants"),
        ("three", "bucket.toggles.a"),
    ],
)
def test_metrics__a_wrong_entry__400_naming_its_field_and_the_valid_rest_recorded(
    token: str, entry: Any, field: str
) -> None:
    response = _post(token, {"a": entry, "b": {"yes": 5, "no": 0}})

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert field in errors, errors
    assert "1 other flag(s) were recorded" in errors["non_field_errors"][0]
    assert _usage() == {"b": (5, 0)}


def test_metrics__nul_anywhere__the_request_guard_refuses_it_whole(token: str) -> None:
    # NUL is hostile input, not an SDK's mistake: the request-level guard (decision 0011)
    # refuses the body before the liberal per-entry reading, naming the path; nothing stored.
    response = _post(token, {"a": {"variants": {"bl\x00ue": 1}}, "b": {"yes": 5, "no": 0}})

    assert response.status_code == 400
    assert 'bucket.toggles.a.variants["bl\\u0000ue"]' in response.json()["errors"]
    assert not FlagUsage.objects.exists() and not SdkInstance.objects.exists()


def test_metrics__only_wrong_entries__400_and_nothing_stored(token: str) -> None:
    response = _post(token, {"a": {"yes": -1}, "b": {"no": 2**64}})

    assert response.status_code == 400
    assert {"bucket.toggles.a.yes", "bucket.toggles.b.no"} <= set(response.json()["errors"])
    assert not FlagUsage.objects.exists() and not SdkInstance.objects.exists()


@pytest.mark.parametrize("toggles", [["a"], "a", 5])
def test_metrics__toggles_not_an_object__400_nothing_stored(token: str, toggles: Any) -> None:
    response = _post(token, toggles)

    assert response.status_code == 400 and "bucket.toggles" in response.json()["errors"]
    assert not FlagUsage.objects.exists() and not SdkInstance.objects.exists()


def test_metrics__unknown_flags__ignored_reported_and_no_rows(
    token: str, development: Environment
) -> None:
    toggles = {
        f"made-up-{i}": {"yes": 1, "variants": {f"v{j}": 1 for j in range(20)}} for i in range(2000)
    }
    toggles["a"] = {"yes": 2, "no": 0}

    response = _post(token, toggles)

    assert response.status_code == 202
    body = response.json()
    assert body["recorded"] == 1 and body["unknown_count"] == 2000 and len(body["unknown"]) == 100
    assert FlagUsage.objects.count() == 1 and not FlagVariantUsage.objects.exists()


def test_metrics__engaged_kill_switch_feature__counted_like_a_flag(
    token: str, development: Environment
) -> None:
    kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope="environment",
        tenant=development.tenant,
        environment=development,
        tool_pattern="refund",
        reason="refund storm",
    )

    response = _post(token, {"kill.tool.refund": {"yes": 4}, "kill.tool.other": {"yes": 1}})

    assert response.status_code == 202
    assert response.json()["unknown"] == ["kill.tool.other"]
    assert _usage() == {"kill.tool.refund": (4, 0)}


def test_metrics__a_total_near_the_column_maximum__saturates_and_later_buckets_still_land(
    token: str, development: Environment
) -> None:
    assert _post(token, {"a": {"yes": 1}, "b": {"yes": 1}}).status_code == 202
    with connection.cursor() as cursor:  # a total already at the edge (years of counts)
        cursor.execute("UPDATE flags_flagusage SET yes = %s WHERE flag_name = 'a'", [COUNT_MAX - 5])

    later = [_post(token, {"a": {"yes": MAX_BUCKET_COUNT}, "b": {"yes": 1}}) for _ in range(3)]

    assert [r.status_code for r in later] == [202, 202, 202]
    assert _usage() == {"a": (COUNT_MAX, 0), "b": (4, 0)}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"appName": "web", "interval": 2**31}, "interval"),
        ({"appName": "web", "interval": 2**63}, "interval"),
        ({"appName": "web", "interval": -1}, "interval"),
    ],
)
def test_register__interval_beyond_its_column__400_nothing_stored(
    token: str, body: dict[str, Any], field: str
) -> None:
    response = _post(token, body, path="register")

    assert response.status_code == 400 and field in response.json()["errors"]
    assert not SdkInstance.objects.exists()


def test_register__interval_at_the_column_maximum__202(token: str) -> None:
    response = _post(token, {"appName": "web", "interval": 2**31 - 1}, path="register")

    assert response.status_code == 202
    assert SdkInstance.objects.get().interval_ms == 2**31 - 1


# Optional fields sent as null (SDKs written in languages where "absent" is null do): none,
# as with the counts above, so the registration or the bucket is not lost (issue 8, kind 2).
@pytest.mark.parametrize(
    "nulls",
    [
        {"instanceId": None},
        {"sdkVersion": None},
        {"strategies": None},
        {"started": None, "interval": None},
        {"instanceId": None, "sdkVersion": None, "strategies": None, "started": None},
    ],
)
def test_register__optional_fields_null__202_registered_as_absent(
    token: str, nulls: dict[str, Any]
) -> None:
    body = {"appName": "web", "instanceId": "web-1", "sdkVersion": "unleash-node:6", **nulls}
    response = _post(token, body, path="register")

    assert response.status_code == 202, response.content
    instance = SdkInstance.objects.get()
    assert instance.app_name == "web"
    assert instance.instance_id == ("unknown" if "instanceId" in nulls else "web-1")
    assert instance.sdk_version == ("" if "sdkVersion" in nulls else "unleash-node:6")


@pytest.mark.parametrize("body", [{"appName": None}, {"instanceId": "web-1"}])
def test_register__app_name_missing_or_null__400_nothing_stored(
    token: str, body: dict[str, Any]
) -> None:
    response = _post(token, body, path="register")
    assert response.status_code == 400 and "appName" in response.json()["errors"]
    assert not SdkInstance.objects.exists()


def test_metrics__instance_id_null__counts_recorded(token: str) -> None:
    response = APIClient().post(
        "/api/client/metrics",
        {
            "appName": "web",
            "instanceId": None,
            "bucket": {
                "start": START,
                "stop": "2026-11-23T10:06:00Z",
                "toggles": {"a": {"yes": 2, "no": 1}},
            },
        },
        format="json",
        HTTP_AUTHORIZATION=token,
    )
    assert response.status_code == 202, response.content
    assert _usage() == {"a": (2, 1)}
