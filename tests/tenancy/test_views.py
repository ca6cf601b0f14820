"""The browser UI of tenancy (and the shell around it), through Django's test client."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.core.roles import Role
from apps.tenancy import services
from apps.tenancy.context_processors import SESSION_KEY
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory, TenantFactory, make_user
from ..html import external_references, sidebar_links

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"  # what tests/factories.make_user sets
SIDEBAR = [
    "/",
    "/agents/",
    "/bundles/",
    "/rollouts/",
    "/flags/",
    "/budgets/",
    "/approvals/",
    "/runtimes/",
    "/audit/",
    "/tenants/",
]


def _state() -> tuple[Any, ...]:
    return (
        sorted(Tenant.objects.values_list("slug", "name", "archived_at")),
        sorted(Agent.objects.values_list("slug", "name", "description", "archived_at")),
        sorted(
            Environment.objects.values_list(
                "slug", "name", "position", "is_production", "archived_at"
            )
        ),
        AuditEvent.objects.count(),
    )


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _html(response: Any) -> str:
    return response.content.decode()


# --------------------------------------------------------------------------- login and logout


def test_login_page__renders_the_form() -> None:
    response = Client().get("/login/")
    assert response.status_code == 200
    html = _html(response)
    assert '<form method="post"' in html
    assert 'name="username"' in html and 'name="password"' in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_pages__anonymous__redirect_to_login() -> None:
    response = Client().get("/agents/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/agents/"


def test_login__right_password__logged_in_and_redirected_to_overview(operator) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    response = client.post("/login/", {"username": "olivia-operator", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    overview = client.get("/")
    assert overview.status_code == 200
    assert "olivia-operator" in _html(overview)


def test_login__wrong_password__form_again_with_error(operator) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    response = client.post("/login/", {"username": "olivia-operator", "password": "nope"})
    assert response.status_code == 200
    assert "Wrong username or password." in _html(response)
    assert client.get("/").status_code == 302


def test_login__deactivated_user__refused(operator) -> None:  # type: ignore[no-untyped-def]
    User.objects.filter(pk=operator.pk).update(is_active=False)
    client = Client()
    assert (
        client.post("/login/", {"username": "olivia-operator", "password": PASSWORD}).status_code
        == 200
    )
    assert client.get("/").status_code == 302


def test_logout__post__session_ends(operator) -> None:  # type: ignore[no-untyped-def]
    client = _client(operator)
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert client.get("/").status_code == 302


# ------------------------------------------------------------------ Viewer: reads, never writes


def test_viewer__lists_render_without_create_buttons(viewer, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    client = _client(viewer)
    pages = {
        url: _html(client.get(url))
        for url in [
            "/",
            "/agents/",
            "/tenants/",
            f"/tenants/{tenant.slug}/",
            f"/agents/{agent.pk}/",
        ]
    }
    assert "Support bot" in pages["/agents/"]
    assert "Acme" in pages["/tenants/"]
    for html in pages.values():
        assert "/agents/new/" not in html
        assert "/tenants/new/" not in html
        assert "/environments/new/" not in html
        assert "/edit/" not in html
        assert "/archive/" not in html


VIEWER_REFUSED = {
    "tenant_create_page": lambda c, t, a, e: c.get("/tenants/new/"),
    "tenant_create_post": lambda c, t, a, e: c.post(
        "/tenants/new/", {"slug": "initech", "name": "Initech", "time_zone": "UTC"}
    ),
    "tenant_edit_page": lambda c, t, a, e: c.get(f"/tenants/{t.slug}/edit/"),
    "tenant_edit_post": lambda c, t, a, e: c.post(
        f"/tenants/{t.slug}/edit/", {"name": "X", "time_zone": "UTC"}
    ),
    "tenant_archive_post": lambda c, t, a, e: c.post(
        f"/tenants/{t.slug}/archive/", {"reason": "r"}
    ),
    "agent_create_page": lambda c, t, a, e: c.get("/agents/new/"),
    "agent_create_post": lambda c, t, a, e: c.post(
        "/agents/new/", {"slug": "new-bot", "name": "New bot"}
    ),
    "agent_edit_page": lambda c, t, a, e: c.get(f"/agents/{a.pk}/edit/"),
    "agent_edit_post": lambda c, t, a, e: c.post(f"/agents/{a.pk}/edit/", {"name": "Renamed"}),
    "agent_archive_page": lambda c, t, a, e: c.get(f"/agents/{a.pk}/archive/"),
    "agent_archive_post": lambda c, t, a, e: c.post(f"/agents/{a.pk}/archive/", {"reason": "r"}),
    "agent_restore_page": lambda c, t, a, e: c.get(f"/agents/{a.pk}/restore/"),
    "agent_restore_post": lambda c, t, a, e: c.post(f"/agents/{a.pk}/restore/", {"reason": "r"}),
    "environment_create_page": lambda c, t, a, e: c.get(f"/tenants/{t.slug}/environments/new/"),
    "environment_create_post": lambda c, t, a, e: c.post(
        f"/tenants/{t.slug}/environments/new/", {"slug": "qa", "name": "QA"}
    ),
    "environment_edit_post": lambda c, t, a, e: c.post(
        f"/environments/{e.pk}/edit/", {"name": "Dev"}
    ),
    "environment_move_post": lambda c, t, a, e: c.post(
        f"/environments/{e.pk}/move/", {"direction": "down"}
    ),
    "environment_archive_post": lambda c, t, a, e: c.post(
        f"/environments/{e.pk}/archive/", {"reason": "r"}
    ),
    "environment_restore_post": lambda c, t, a, e: c.post(
        f"/environments/{e.pk}/restore/", {"reason": "r"}
    ),
}


@pytest.mark.parametrize("role", [Role.VIEWER, Role.APPROVER])
@pytest.mark.parametrize("action", list(VIEWER_REFUSED))
def test_read_only_role__create_edit_archive__403_and_nothing_changes(
    role: Role, action: str, tenant: Tenant
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    environment = tenant.environments.get(slug="development")
    user = make_user(role, tenant)
    before = _state()

    response = VIEWER_REFUSED[action](_client(user), tenant, agent, environment)

    assert response.status_code == 403
    assert _state() == before


# --------------------------------------------------------------------------- tenant isolation


FOREIGN_PAGES = {
    "tenant_detail": lambda t, a, e: f"/tenants/{t.slug}/",
    "tenant_edit": lambda t, a, e: f"/tenants/{t.slug}/edit/",
    "tenant_archive": lambda t, a, e: f"/tenants/{t.slug}/archive/",
    "environment_create": lambda t, a, e: f"/tenants/{t.slug}/environments/new/",
    "agent_detail": lambda t, a, e: f"/agents/{a.pk}/",
    "agent_edit": lambda t, a, e: f"/agents/{a.pk}/edit/",
    "agent_archive": lambda t, a, e: f"/agents/{a.pk}/archive/",
    "agent_restore": lambda t, a, e: f"/agents/{a.pk}/restore/",
    "environment_edit": lambda t, a, e: f"/environments/{e.pk}/edit/",
    "environment_archive": lambda t, a, e: f"/environments/{e.pk}/archive/",
    "environment_restore": lambda t, a, e: f"/environments/{e.pk}/restore/",
}


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("page", list(FOREIGN_PAGES))
def test_other_tenants_pages__404_and_nothing_changes(
    operator, other_tenant: Tenant, page: str, method: str
) -> None:  # type: ignore[no-untyped-def]
    url = FOREIGN_PAGES[page](
        other_tenant, other_tenant.agents.get(), other_tenant.environments.get()
    )
    before = _state()

    response = getattr(_client(operator), method)(
        url, {"name": "pwned", "reason": "r", "slug": "x"}
    )

    assert response.status_code == 404
    assert "Secret agent" not in _html(response)
    assert _state() == before


def test_environment_move__other_tenant__404(operator, other_tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    before = _state()
    response = _client(operator).post(
        f"/environments/{other_tenant.environments.get().pk}/move/", {"direction": "up"}
    )
    assert response.status_code == 404
    assert _state() == before


def test_tenant_switcher__lists_only_granted_tenants(
    operator, tenant: Tenant, other_tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    html = _html(_client(operator).get("/"))
    assert '<option value="acme"' in html
    assert "globex" not in html and "Globex" not in html


def test_tenant_switcher__other_tenant__404_and_current_tenant_kept(
    operator, tenant: Tenant, other_tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    client = _client(operator)
    response = client.post("/tenants/switch/", {"tenant": "globex", "next": "/agents/"})
    assert response.status_code == 404
    assert client.session.get(SESSION_KEY) is None
    agents = _html(client.get("/agents/"))
    assert "Secret agent" not in agents
    assert "in Acme" in agents


def test_tenant_switcher__granted_tenant__switches_pages(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    second = TenantFactory(slug="initech", name="Initech")
    AgentFactory(tenant=second, slug="initech-bot", name="Initech bot")
    AgentFactory(tenant=tenant, slug="acme-bot", name="Acme bot")
    assign_perm("tenancy.view_tenant", operator, second)
    client = _client(operator)

    response = client.post("/tenants/switch/", {"tenant": "initech", "next": "/agents/"})

    assert response.status_code == 302
    assert response["Location"] == "/agents/"
    agents = _html(client.get("/agents/"))
    assert "Initech bot" in agents and "Acme bot" not in agents


@pytest.mark.parametrize(
    "next_url",
    [
        "//evil.example.com/",
        "/\\evil.example.com/",  # browsers read a backslash as a slash: //evil…
        "/\\/evil.example.com/",
        "\\\\evil.example.com",
        "/\t/evil.example.com/",  # a tab is dropped by browsers inside URLs
        "https://evil.example.com/",
        "javascript:alert(1)",
    ],
)
def test_tenant_switcher__external_next__goes_home(operator, tenant: Tenant, next_url: str) -> None:  # type: ignore[no-untyped-def]
    response = _client(operator).post("/tenants/switch/", {"tenant": "acme", "next": next_url})
    assert response["Location"] == "/"


# --------------------------------------------------------------------------- agents through forms


def test_agent_create_form__valid__created_audited_and_listed(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    client = _client(operator)
    assert client.get("/agents/new/").status_code == 200

    response = client.post(
        "/agents/new/",
        {
            "slug": "support-bot",
            "name": "Support bot",
            "description": "answers",
            "reason": "launch",
        },
    )

    agent = Agent.objects.get(slug="support-bot")
    assert response.status_code == 302
    assert response["Location"] == f"/agents/{agent.pk}/"
    assert agent.tenant == tenant
    event = AuditEvent.objects.get(action="agent.created")
    assert (event.target_id, event.actor_label, event.reason, event.tenant_id) == (
        str(agent.pk),
        "olivia-operator",
        "launch",
        tenant.pk,
    )
    assert "Support bot" in _html(client.get("/agents/"))


def test_agent_edit_form__valid__saved_and_audited_with_before_after(
    operator, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")

    response = _client(operator).post(
        f"/agents/{agent.pk}/edit/",
        {"name": "Helpdesk bot", "description": "", "reason": "rename", "expected_version": 1},
    )

    assert response.status_code == 302
    assert Agent.objects.get(pk=agent.pk).name == "Helpdesk bot"
    event = AuditEvent.objects.get(action="agent.updated")
    assert (event.before["name"], event.after["name"], event.reason) == (
        "Support bot",
        "Helpdesk bot",
        "rename",
    )


def test_agent_archive__get__confirmation_page_states_the_effect(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    response = _client(operator).get(f"/agents/{agent.pk}/archive/")
    assert response.status_code == 200
    html = _html(response)
    assert "Archive Support bot?" in html
    assert "Effect:" in html
    assert 'name="reason"' in html
    assert Agent.objects.get(pk=agent.pk).archived_at is None


@pytest.mark.parametrize("reason", ["", "   "])
def test_agent_archive__without_reason__field_error_and_nothing_changes(
    operator, tenant: Tenant, reason: str
) -> None:  # type: ignore[no-untyped-def]
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    before = _state()

    response = _client(operator).post(f"/agents/{agent.pk}/archive/", {"reason": reason})

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert 'id="id_reason_error"' in _html(response)
    assert _state() == before


def test_agent_archive__with_reason__archived_audited_and_gone_from_list(
    operator, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    client = _client(operator)

    response = client.post(
        f"/agents/{agent.pk}/archive/", {"reason": "replaced by v2", "expected_version": 1}
    )

    assert response.status_code == 302
    assert Agent.objects.get(pk=agent.pk).archived_at is not None
    assert AuditEvent.objects.get(action="agent.archived").reason == "replaced by v2"
    assert [a.slug for a in client.get("/agents/").context["page"].object_list] == []
    assert [a.slug for a in client.get("/agents/?archived=1").context["page"].object_list] == [
        "support-bot"
    ]


BAD_AGENT_INPUT = [
    ({"slug": "Bad Slug!", "name": "x"}, "slug"),
    ({"slug": "", "name": "x"}, "slug"),
    ({"slug": "support-bot", "name": "duplicate"}, "slug"),
    ({"slug": "ok-bot", "name": ""}, "name"),
    ({"slug": "ok-bot", "name": "x" * 121}, "name"),
]


@pytest.mark.parametrize(("data", "field"), BAD_AGENT_INPUT)
def test_agent_create_form__bad_input__field_error_and_nothing_stored(
    operator,
    tenant: Tenant,
    data: dict[str, str],
    field: str,  # type: ignore[no-untyped-def]
) -> None:
    AgentFactory(tenant=tenant, slug="support-bot")
    before = _state()

    response = _client(operator).post("/agents/new/", data)

    assert response.status_code == 200
    assert response.context["form"].errors[field]
    assert f'id="id_{field}_error"' in _html(response)
    assert _state() == before


@pytest.mark.parametrize(
    ("url", "data", "field"),
    [
        ("/tenants/new/", {"slug": "acme", "name": "Dup", "time_zone": "UTC"}, "slug"),
        (
            "/tenants/new/",
            {"slug": "initech", "name": "Initech", "time_zone": "Mars/Olympus"},
            "time_zone",
        ),
        ("/tenants/acme/environments/new/", {"slug": "staging", "name": "Dup"}, "slug"),
        ("/tenants/acme/environments/new/", {"slug": "-bad-", "name": "QA"}, "slug"),
        ("/tenants/acme/edit/", {"name": "", "time_zone": "UTC"}, "name"),
    ],
)
def test_tenancy_forms__bad_input__field_error_and_nothing_stored(
    operator,
    tenant: Tenant,
    url: str,
    data: dict[str, str],
    field: str,  # type: ignore[no-untyped-def]
) -> None:
    before = _state()
    response = _client(operator).post(url, data)
    assert response.status_code == 200
    assert response.context["form"].errors[field]
    assert _state() == before


def test_tenant_create_form__operator__sees_it_with_default_environments(operator) -> None:  # type: ignore[no-untyped-def]
    client = _client(operator)
    response = client.post(
        "/tenants/new/",
        {
            "slug": "initech",
            "name": "Initech",
            "time_zone": "Europe/Paris",
            "with_default_environments": "on",
        },
    )
    assert response.status_code == 302
    html = _html(client.get("/tenants/initech/"))
    assert "Development" in html and "Staging" in html and "Production" in html
    assert client.session[SESSION_KEY] == "initech"


def test_environment_archive__with_reason__leaves_promotion_order(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    staging = tenant.environments.get(slug="staging")
    response = _client(operator).post(
        f"/environments/{staging.pk}/archive/", {"reason": "merged into dev", "expected_version": 1}
    )
    assert response.status_code == 302
    assert list(
        tenant.environments.filter(archived_at__isnull=True).values_list("slug", flat=True)
    ) == ["development", "production"]
    assert AuditEvent.objects.get(action="environment.archived").reason == "merged into dev"


def test_environment_move__form_post__reorders_and_audits(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    development = tenant.environments.get(slug="development")
    response = _client(operator).post(
        f"/environments/{development.pk}/move/", {"direction": "down", "expected_version": 1}
    )
    assert response.status_code == 302
    assert list(tenant.environments.order_by("position").values_list("slug", flat=True)) == [
        "staging",
        "development",
        "production",
    ]
    assert AuditEvent.objects.filter(action="environment.moved").count() == 1


# --------------------------------------------------------------------------- the shell


@pytest.fixture
def no_tenant_user() -> User:
    return make_user(Role.OPERATOR, username="nina-new")


def test_sidebar__links__the_documented_sections(no_tenant_user: User) -> None:
    links = list(dict.fromkeys(sidebar_links(_html(_client(no_tenant_user).get("/")))))
    assert [link for link in links if link in SIDEBAR] == SIDEBAR
    assert "/api/docs/" in links


@pytest.mark.parametrize("url", SIDEBAR)
def test_sidebar_page__user_without_tenants__renders_an_empty_state(
    no_tenant_user: User, url: str
) -> None:
    response = _client(no_tenant_user).get(url)
    assert response.status_code == 200
    assert 'class="empty' in _html(response)


@pytest.mark.parametrize("url", SIDEBAR)
def test_sidebar_page__marks_itself_current(operator, tenant: Tenant, url: str) -> None:  # type: ignore[no-untyped-def]
    assert f'href="{url}" aria-current="page"' in _html(_client(operator).get(url))


def _pages_to_scan(tenant: Tenant) -> list[str]:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    services.agent_update(actor=SystemActor("system:test"), agent=agent, name="Helpdesk bot")
    event = AuditEvent.objects.get(action="agent.updated")
    environment = tenant.environments.get(slug="staging")
    return [
        *SIDEBAR,
        "/login/",
        "/profile/",
        "/users/",
        "/users/new/",
        "/tenants/new/",
        "/agents/new/",
        f"/tenants/{tenant.slug}/",
        f"/tenants/{tenant.slug}/edit/",
        f"/tenants/{tenant.slug}/archive/",
        f"/agents/{agent.pk}/",
        f"/agents/{agent.pk}/edit/",
        f"/agents/{agent.pk}/archive/",
        f"/environments/{environment.pk}/edit/",
        f"/environments/{environment.pk}/archive/",
        f"/audit/{event.pk}/",
        "/no-such-page/",
    ]


def test_rendered_pages__reference_no_external_urls(admin, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    client = _client(admin)
    found = {url: external_references(_html(client.get(url))) for url in _pages_to_scan(tenant)}
    assert {url: refs for url, refs in found.items() if refs} == {}


# --------------------------------------------------------------------------- audit page


@pytest.fixture
def audit_history(
    operator, admin, tenant: Tenant, other_tenant: Tenant, empty_audit_log
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Events by two actors, in two tenants, on several targets, on both sides of a moment
    (and no others: the log starts empty)."""
    bot = services.agent_create(
        actor=operator, tenant=tenant, slug="support-bot", name="Support bot"
    )
    moment = timezone.now()
    services.agent_update(actor=admin, agent=bot, name="Helpdesk bot", reason="rename")
    services.tenant_update(actor=admin, tenant=tenant, name="Acme Corp")
    services.tenant_update(actor=admin, tenant=other_tenant, name="Globex Inc")
    return {"bot": bot, "moment": moment}


def _listed(client: Client, query: str) -> list[str]:
    response = client.get(f"/audit/?{query}")
    assert response.status_code == 200
    return [e.action for e in response.context["page"].object_list]


def test_audit_page__admin_no_filter__everything_newest_first(
    admin, audit_history: dict[str, Any]
) -> None:  # type: ignore[no-untyped-def]
    assert _listed(_client(admin), "") == [
        "tenant.updated",
        "tenant.updated",
        "agent.updated",
        "agent.created",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("actor=olivia", ["agent.created"]),
        ("actor=admin-user", ["tenant.updated", "tenant.updated", "agent.updated"]),
        ("action=agent.", ["agent.updated", "agent.created"]),
        ("action=tenant.updated", ["tenant.updated", "tenant.updated"]),
        ("target=Helpdesk", ["agent.updated"]),
        ("target=tenancy.tenant", ["tenant.updated", "tenant.updated"]),
        ("actor=admin-user&action=agent.", ["agent.updated"]),
    ],
)
def test_audit_page__filters(
    admin, audit_history: dict[str, Any], query: str, expected: list[str]
) -> None:  # type: ignore[no-untyped-def]
    assert _listed(_client(admin), query) == expected


def test_audit_page__tenant_filter(
    admin, tenant: Tenant, other_tenant: Tenant, audit_history: dict[str, Any]
) -> None:  # type: ignore[no-untyped-def]
    client = _client(admin)
    assert _listed(client, f"tenant={tenant.pk}") == [
        "tenant.updated",
        "agent.updated",
        "agent.created",
    ]
    assert _listed(client, f"tenant={other_tenant.pk}") == ["tenant.updated"]


def test_audit_page__target_id_filter(admin, audit_history: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    assert _listed(_client(admin), f"target={audit_history['bot'].pk}&action=agent.") == [
        "agent.updated",
        "agent.created",
    ]


def test_audit_page__time_range(admin, audit_history: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    client = _client(admin)
    moment = audit_history["moment"]
    since = _listed(client, f"since={moment.isoformat().replace('+', '%2B')}")
    until = _listed(client, f"until={moment.isoformat().replace('+', '%2B')}")
    assert since == ["tenant.updated", "tenant.updated", "agent.updated"]
    assert until == ["agent.created"]
    window = (moment - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    assert _listed(client, f"until={window}") == []


def test_audit_page__bad_filter__error_shown_not_500(admin, audit_history: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    response = _client(admin).get("/audit/?since=yesterday-ish")
    assert response.status_code == 200
    assert "errorlist" in _html(response)


def test_audit_page__operator__only_granted_tenants(
    operator, audit_history: dict[str, Any]
) -> None:  # type: ignore[no-untyped-def]
    client = _client(operator)
    assert _listed(client, "") == ["tenant.updated", "agent.updated", "agent.created"]
    foreign = AuditEvent.objects.get(target_label="Globex Inc")
    assert client.get(f"/audit/{foreign.pk}/").status_code == 404
    assert _listed(client, f"tenant={foreign.tenant_id}") == [
        "tenant.updated",
        "agent.updated",
        "agent.created",
    ]


def test_audit_detail__shows_the_before_after_diff(operator, audit_history: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    event = AuditEvent.objects.get(action="agent.updated")
    html = _html(_client(operator).get(f"/audit/{event.pk}/"))
    assert 'data-path="name"' in html  # the field that changed, old and new as JSON
    assert '<span class="visually-hidden">before: </span>&quot;Support bot&quot;</del>' in html
    assert '<span class="visually-hidden">after: </span>&quot;Helpdesk bot&quot;</ins>' in html
    assert "rename" in html
    assert event.hash in html and event.prev_hash in html


# --------------------------------------------------------------------------- query budgets


@pytest.fixture
def busy_tenant(admin, operator, tenant: Tenant) -> Tenant:  # type: ignore[no-untyped-def]
    for i in range(30):
        agent = services.agent_create(
            actor=operator, tenant=tenant, slug=f"bot-{i}", name=f"Bot {i}"
        )
        services.agent_update(actor=admin, agent=agent, description=f"does {i}")
    for i in range(10):
        services.tenant_create(
            actor=admin, slug=f"extra-{i}", name=f"Extra {i}", with_default_environments=False
        )
    return tenant


# ~12 per page today (session, user, role, tenant switcher, permissions, the page's own
# reads); the overview's rows and timeline are a fixed number of reads whatever the rows
# (tests/dashboard/test_overview.py). An N+1 over the 30 agents or 100+ audit events blows
# past these.
QUERY_BUDGETS = {
    "/": 20,
    "/agents/": 15,
    "/tenants/": 15,
    "/tenants/acme/": 15,
    # + one lookup per target type on the page (the links to each event's target)
    "/audit/": 17,
    "/audit/?action=agent.": 17,
}


@pytest.mark.parametrize("url", list(QUERY_BUDGETS))
def test_list_page__many_rows__bounded_queries(
    admin, busy_tenant: Tenant, django_assert_max_num_queries, url: str
) -> None:  # type: ignore[no-untyped-def]
    client = _client(admin)
    client.get(url)  # warm the session and content-type caches
    with django_assert_max_num_queries(QUERY_BUDGETS[url]):
        response = client.get(url)
    assert response.status_code == 200
