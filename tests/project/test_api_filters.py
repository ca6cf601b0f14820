"""Every API list that filters by query parameters does it with a django-filter ``FilterSet``
(``apps/<app>/api/filters.py``, set as the view's ``filterset_class``), and the OpenAPI
document states each filter's type, so clients and the fuzzer know what a 400 is for."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from apps.core.filters import MAX_ID, FilterSet

pytestmark = pytest.mark.django_db

ID = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
BOOLEAN = {"type": "boolean"}
TEXT = {"type": "string", "maxLength": 500}
DATE_TIME = {"type": "string", "format": "date-time"}

# path -> {parameter: schema}: every filter of every filtered list.
FILTERS: dict[str, dict[str, dict[str, Any]]] = {
    "/api/v1/tenants/": {"archived": BOOLEAN},
    "/api/v1/agents/": {"tenant": TEXT, "archived": BOOLEAN},
    "/api/v1/environments/": {"tenant": TEXT, "archived": BOOLEAN},
    "/api/v1/flags/": {"environment": ID},
    "/api/v1/segments/": {"environment": ID},
    "/api/v1/kill-switches/": {
        "tenant": ID,
        "status": {"type": "string", "enum": ["engaged", "released"]},
    },
    "/api/v1/runtime-tokens/": {"environment": ID},
    "/api/v1/promotion-gates/": {"tenant": TEXT},
    "/api/v1/audit-events/": {
        "actor": TEXT,
        "action": TEXT,
        "tenant": ID,
        "target": TEXT,
        "since": DATE_TIME,
        "until": DATE_TIME,
    },
    "/api/v1/audit/checkpoints/": {"after_event": {**ID, "minimum": 0}},
    "/api/v1/budgets/": {
        "tenant": ID,
        "scope": {"type": "string", "enum": ["agent", "end_user", "tenant", "tenant_agent"]},
        "agent": ID,
    },
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.mark.parametrize("path", sorted(FILTERS))
def test_list__documents_each_filter_with_its_type(schema: dict[str, Any], path: str) -> None:
    parameters = {
        p["name"]: p for p in schema["paths"][path]["get"]["parameters"] if p["in"] == "query"
    }
    documented = {name: p["schema"] for name, p in parameters.items() if name != "page"}
    assert documented == FILTERS[path]
    assert all(parameters[name].get("description") for name in FILTERS[path])


def test_filtered_lists__use_a_filterset() -> None:
    from django.urls import get_resolver

    filtered = set()
    for pattern in get_resolver().url_patterns:
        _collect(pattern, "", filtered)
    views = {path: view for path, view in filtered if path in FILTERS}
    assert set(views) == set(FILTERS)
    for path, view in views.items():
        assert issubclass(view.filterset_class, FilterSet), path


def _collect(pattern: Any, prefix: str, found: set[tuple[str, Any]]) -> None:
    """(path, view class) of every list route, the path as the schema spells it."""
    route = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
    if hasattr(pattern, "url_patterns"):
        for inner in pattern.url_patterns:
            _collect(inner, route, found)
        return
    view = getattr(pattern.callback, "cls", None)
    actions = getattr(pattern.callback, "actions", None) or {}
    if view is not None and actions.get("get") == "list":
        found.add(("/" + route.replace("\\.(?P<format>[a-z0-9]+)/?", ""), view))
