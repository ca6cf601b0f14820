"""A tenant's trace-link template: validated (an http(s) URL with {trace_id}), set through the
service and the edit form, audited."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from apps.audit.models import AuditEvent
from apps.tenancy import services
from apps.tenancy.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "template",
    [
        "https://tempo.example/trace/{trace_id}",
        "http://jaeger.internal:16686/trace/{trace_id}?uiFind=x",
        "https://cloud.langfuse.com/project/p1/traces/{trace_id}",
        "",
    ],
)
def test_tenant_update__valid_trace_link__saved_and_audited(
    admin, tenant: Tenant, template: str
) -> None:
    services.tenant_update(
        actor=admin, tenant=tenant, trace_link_template="https://x.example/{trace_id}"
    )
    before = AuditEvent.objects.count()

    services.tenant_update(actor=admin, tenant=tenant, trace_link_template=template)

    tenant.refresh_from_db()
    assert tenant.trace_link_template == template
    event = AuditEvent.objects.order_by("-id").first()
    assert AuditEvent.objects.count() == before + 1 and event is not None
    assert event.action == "tenant.updated"
    assert event.after["trace_link_template"] == template


@pytest.mark.parametrize(
    "template",
    [
        "https://tempo.example/trace/",  # no placeholder
        "javascript:alert(1)//{trace_id}",
        "ftp://tempo.example/{trace_id}",
        "tempo.example/trace/{trace_id}",
        "https://{trace_id}",
    ],
)
def test_tenant_update__bad_trace_link__refused_on_the_field(
    admin, tenant: Tenant, template: str
) -> None:
    version = tenant.version
    with pytest.raises(ValidationError) as caught:
        services.tenant_update(actor=admin, tenant=tenant, trace_link_template=template)

    assert "trace_link_template" in caught.value.message_dict
    tenant.refresh_from_db()
    assert tenant.trace_link_template == "" and tenant.version == version


def test_tenant_edit_form__sets_trace_link(admin, tenant: Tenant) -> None:
    client = Client()
    client.force_login(admin)

    page = client.get(f"/tenants/{tenant.slug}/edit/").content.decode()
    response = client.post(
        f"/tenants/{tenant.slug}/edit/",
        {
            "name": tenant.name,
            "time_zone": tenant.time_zone,
            "trace_link_template": "https://tempo.example/trace/{trace_id}",
            "expected_version": tenant.version,
        },
    )

    assert 'name="trace_link_template"' in page
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.trace_link_template == "https://tempo.example/trace/{trace_id}"


def test_tenant_edit_form__bad_trace_link__field_error(admin, tenant: Tenant) -> None:
    client = Client()
    client.force_login(admin)

    response = client.post(
        f"/tenants/{tenant.slug}/edit/",
        {
            "name": tenant.name,
            "time_zone": tenant.time_zone,
            "trace_link_template": "https://tempo.example/trace/",
            "expected_version": tenant.version,
        },
    )

    assert response.status_code == 200
    assert "Put {trace_id} where the trace id goes" in response.content.decode()
