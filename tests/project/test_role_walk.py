"""Every role reads everything in its tenants, and sees only the controls it may use
(issue "The operator's and the approver's day", item 2; docs/roles.md).

Generated from the URL configuration and the authorisation matrix's ``ROUTES`` (so a new
page is walked without a line here):

* every GET route whose permission is a *read* (``<app>.view_<model>``) is granted to every
  role, except the few Admin areas named in ``ADMIN_ONLY_READS``;
* each role GETs every page and operator API read it may, in its granted tenant, and gets
  200 (not 403, not a redirect to a login or an error);
* on every HTML page a role sees, every link, form and htmx request resolves to a route the
  role may call with that method: no "Roll back now" that then answers 403.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import Resolver404, resolve, reverse

from apps.core.roles import ROLE_PERMISSIONS, Role

from .test_authorization_matrix import (  # noqa: F401  (world: a fixture)
    LOGGED_IN,
    PUBLIC,
    ROUTES,
    URLS,
    Route,
    world,
)

pytestmark = pytest.mark.django_db

ROLES = {
    "viewer": Role.VIEWER,
    "approver": Role.APPROVER,
    "operator": Role.OPERATOR,
    "admin": Role.ADMIN,
}

# Reads that are Admin business: users and roles, and audit checkpoints (they count every
# tenant's events). Everything else a role reads, every role reads.
ADMIN_ONLY_READS = {"auth.view_user", "audit.view_auditcheckpoint"}

# What some reads need beyond their path: a query, or htmx's header for a fragment (a
# browser asking for the fragment's URL is redirected to the page that holds it).
QUERY = {
    "bundle-version-diff": "from=1&to=2",
    "runtimes:propagation": "environment={environment}&revision=1",
    "telemetry:session_export": "session=s-1&environment=development",
}
HEADERS = {"approvals:detail": {"HTTP_HX_REQUEST": "true"}}


def _read_permission(permission: str) -> bool:
    return permission.split(".", 1)[-1].startswith("view_")


def _may(role: Role, permission: str) -> bool:
    return permission in (PUBLIC, LOGGED_IN) or permission in ROLE_PERMISSIONS[role]


def test_every_read_route__granted_to_every_role_but_admin_areas() -> None:
    problems = []
    for name, route in ROUTES.items():
        permission = route.methods.get("GET", "")
        if not _read_permission(permission) or permission in ADMIN_ONLY_READS:
            continue
        missing = [role.value for role in Role if permission not in ROLE_PERMISSIONS[role]]
        if missing:
            problems.append(f"{name}: {permission} missing from {missing}")
    assert not problems, "\n".join(problems)


class _Controls(HTMLParser):
    """Every (method, url) the page lets its user call: links, forms, htmx attributes."""

    def __init__(self, page_url: str) -> None:
        super().__init__()
        self.page_url = page_url
        self.calls: list[tuple[str, str, str]] = []  # (method, url, what)
        self.form_method = "GET"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "a" and "href" in values:
            self.calls.append(("GET", values["href"], f"<a> {values['href']}"))
        if tag == "form":
            method = (values.get("method") or "get").upper()
            self.form_method = method
            action = values.get("action") or self.page_url
            if method != "DIALOG":  # closes a <dialog>: no request
                self.calls.append((method, action, f"<form method={method.lower()}> {action}"))
        if tag in ("button", "input") and values.get("formaction"):
            method = (values.get("formmethod") or self.form_method).upper()
            self.calls.append((method, values["formaction"], f"formaction {values['formaction']}"))
        for attribute in ("hx-get", "hx-post", "hx-put", "hx-patch", "hx-delete"):
            if values.get(attribute):
                method = attribute.removeprefix("hx-").upper()
                self.calls.append((method, values[attribute], f"{attribute} {values[attribute]}"))


def _route_of(url: str) -> tuple[str, Route] | None:
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    try:
        match = resolve(parts.path)
    except Resolver404:
        return None
    route = ROUTES.get(match.view_name)
    return (match.view_name, route) if route is not None else None


def _forbidden_controls(html: str, page_url: str, role: Role) -> list[str]:
    parser = _Controls(page_url)
    parser.feed(html)
    problems = []
    for method, url, what in parser.calls:
        found = _route_of(url)
        if found is None:
            continue  # static files, other sites, fragments
        name, route = found
        # A link to an action's URL opens its confirmation page, which leads to the POST
        permission = route.methods.get(method) or route.methods.get("POST")
        if permission is None:
            problems.append(f"{what}: {name} takes no {method}")
            continue
        if not _may(role, permission):
            problems.append(f"{what}: {name} needs {permission}")
    return problems


def _get_routes(role: Role) -> list[str]:
    return sorted(
        name
        for name, route in ROUTES.items()
        if "GET" in route.methods
        and route.methods["GET"] not in (PUBLIC,)
        and _may(role, route.methods["GET"])
        and not URLS[name].startswith(("api/runtime/", "api/client/"))
    )


@pytest.mark.parametrize("principal", list(ROLES))
def test_every_page_and_api_read__role__200_and_no_control_it_may_not_use(
    world: dict[str, Any],  # noqa: F811  (the fixture imported above)
    principal: str,
) -> None:
    role = ROLES[principal]
    client = Client()
    client.force_login(world["users"][principal])
    problems: list[str] = []
    for name in _get_routes(role):
        route = ROUTES[name]
        url = reverse(name, kwargs=world["args"][route.args] if route.args else None)
        if name in QUERY:
            environment = world["args"]["environment"]["pk"]
            url += "?" + QUERY[name].format(environment=environment)
        response = client.get(url, **HEADERS.get(name, {}))
        if response.status_code != 200:
            problems.append(f"GET {url} ({name}): {response.status_code}, expected 200")
            continue
        if response.get("Content-Type", "").startswith("text/html"):
            problems += [
                f"{url}: {p}" for p in _forbidden_controls(response.content.decode(), url, role)
            ]
    assert not problems, f"{role.value}:\n" + "\n".join(problems)
