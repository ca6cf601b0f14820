"""The four roles and what each may do.

A role says *what* a user may do (Django model permissions on a group); a tenant grant says
*where* (a django-guardian object permission on the tenant). Both are needed, except for
Admins, who see every tenant. Permissions are named as strings so this bottom app need not
import the feature apps that define them. A name no installed model defines fails the system
check (``accounts.E001``); the groups are synced after every ``migrate`` (``role_sync``)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "Admin"
    OPERATOR = "Operator"
    APPROVER = "Approver"
    VIEWER = "Viewer"


TENANT_ACCESS_PERMISSION = "tenancy.view_tenant"

_VIEW = [
    "tenancy.view_tenant",
    "tenancy.view_agent",
    "tenancy.view_environment",
    "audit.view_auditevent",
    "accounts.view_runtimetoken",
    "rollouts.view_deployment",
    "runtimes.view_runtimeinstance",
    "flags.view_flag",
    "flags.view_segment",
    "flags.view_killswitch",
    "flags.view_sdkinstance",
    "bundles.view_bundleversion",
    "bundles.view_evaluation",
    "bundles.view_promotiongate",
    "telemetry.view_requestrecord",
    "reviews.view_reviewgrade",
]
_OPERATE = [
    "tenancy.add_tenant",
    "tenancy.change_tenant",
    "tenancy.add_agent",
    "tenancy.change_agent",
    "tenancy.add_environment",
    "tenancy.change_environment",
    "accounts.add_runtimetoken",
    "accounts.change_runtimetoken",
    "rollouts.add_deployment",
    "flags.add_flag",
    "flags.change_flag",
    "flags.delete_flag",
    "flags.add_segment",
    "flags.change_segment",
    "flags.delete_segment",
    "flags.add_killswitch",
    "flags.change_killswitch",
    "bundles.add_bundleversion",
    "bundles.add_evaluation",
    "bundles.add_promotiongate",
    "bundles.change_promotiongate",
    "reviews.add_reviewgrade",
    "reviews.change_reviewgrade",
    "reviews.change_reviewpolicy",
]
_MANAGE_USERS = ["auth.view_user", "auth.add_user", "auth.change_user"]

ROLE_PERMISSIONS: dict[Role, list[str]] = {
    Role.VIEWER: _VIEW,
    Role.APPROVER: _VIEW,
    Role.OPERATOR: _VIEW + _OPERATE,
    Role.ADMIN: _VIEW + _OPERATE + _MANAGE_USERS,
}

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.ADMIN: "everything, in every tenant, including users and roles",
    Role.OPERATOR: "changes agents, environments, releases and safety controls in granted tenants",
    Role.APPROVER: "decides approval requests in granted tenants; otherwise read-only",
    Role.VIEWER: "read-only in granted tenants",
}
