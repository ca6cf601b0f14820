from django.urls import path

from . import views

app_name = "tenancy"
urlpatterns = [
    path("tenants/", views.tenant_list, name="tenant_list"),
    path("tenants/new/", views.tenant_create, name="tenant_create"),
    path("tenants/switch/", views.tenant_switch, name="tenant_switch"),
    path("tenants/<slug:slug>/", views.tenant_detail, name="tenant_detail"),
    path("tenants/<slug:slug>/edit/", views.tenant_edit, name="tenant_edit"),
    path("tenants/<slug:slug>/archive/", views.tenant_archive, name="tenant_archive"),
    path("tenants/<slug:slug>/restore/", views.tenant_restore, name="tenant_restore"),
    path(
        "tenants/<slug:slug>/environments/new/", views.environment_create, name="environment_create"
    ),
    path("environments/<int:pk>/edit/", views.environment_edit, name="environment_edit"),
    path("environments/<int:pk>/move/", views.environment_move, name="environment_move"),
    path("environments/<int:pk>/archive/", views.environment_archive, name="environment_archive"),
    path("environments/<int:pk>/restore/", views.environment_restore, name="environment_restore"),
    path("agents/", views.agent_list, name="agent_list"),
    path("agents/new/", views.agent_create, name="agent_create"),
    path("agents/<int:pk>/", views.agent_detail, name="agent_detail"),
    path("agents/<int:pk>/edit/", views.agent_edit, name="agent_edit"),
    path("agents/<int:pk>/archive/", views.agent_archive, name="agent_archive"),
    path("agents/<int:pk>/restore/", views.agent_restore, name="agent_restore"),
]
