"""The four roles and what each may do.

A role says *what* a user may do (Django model permissions on a group); a tenant grant says
*where* (a django-guardian object permission on the tenant). Both are needed, except for
Admins, who see every tenant. Permissions are named as strings so the kernel need not
import the feature apps that define them. A name no installed model defines fails the system
check (``accounts.E001``); the groups are synced after every ``migrate``
(``apps/accounts/role_sync.py``). ``apps.core.authz`` is the one place that reads them."""

from __future__ import annotations

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin


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
    "rollouts.view_rollout",
    "rollouts.view_rolloutplan",
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
    "alerts.view_alert",
    "alerts.view_alertchannel",
    "budgets.view_budget",
    "approvals.view_approvalqueue",
    "approvals.view_approvalrequest",
]
# Deciding approval requests: a role permission (which roles may decide at all) beside the
# queue's own object permission (which queues: its approver group; Admins decide in any).
_DECIDE = ["approvals.decide_approvalqueue"]
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
    "rollouts.add_rollout",
    "rollouts.change_rollout",
    "rollouts.change_rolloutplan",
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
    "alerts.change_alert",
    "alerts.add_alertchannel",
    "alerts.change_alertchannel",
    "alerts.delete_alertchannel",
    "budgets.add_budget",
    "budgets.change_budget",
    "budgets.delete_budget",
    "approvals.add_approvalqueue",
    "approvals.change_approvalqueue",
    "approvals.delete_approvalqueue",
]
# Only for a role that sees every tenant: users, roles, and audit checkpoints (which count
# every tenant's events).
_MANAGE_USERS = [
    "auth.view_user",
    "auth.add_user",
    "auth.change_user",
    "audit.view_auditcheckpoint",
    # Past a failing promotion gate, with a reason: a decision above an operator's.
    "rollouts.override_rollout_gate",
]

ROLE_PERMISSIONS: dict[Role, list[str]] = {
    Role.VIEWER: _VIEW,
    Role.APPROVER: _VIEW + _DECIDE,
    Role.OPERATOR: _VIEW + _OPERATE + _DECIDE,
    Role.ADMIN: _VIEW + _OPERATE + _DECIDE + _MANAGE_USERS,
}

# Roles that see every tenant without a grant (``apps.core.authz.visible_tenants``).
EVERY_TENANT_ROLES: frozenset[Role] = frozenset({Role.ADMIN})


def roles_with(permission: str) -> list[Role]:
    """The roles whose permissions include ``permission`` ("app_label.codename"), strongest
    first; what tests derive their expectations from."""
    return [role for role in Role if permission in ROLE_PERMISSIONS[role]]


ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.ADMIN: "everything, in every tenant, including users and roles",
    Role.OPERATOR: "changes agents, environments, releases and safety controls in granted tenants",
    Role.APPROVER: "decides approval requests in granted tenants; otherwise read-only",
    Role.VIEWER: "read-only in granted tenants",
}


def user_role(user: AbstractBaseUser | AnonymousUser) -> Role | None:
    """The strongest role among the user's groups (a superuser is an Admin); None for an
    anonymous user or one without a role. Reads ``user.groups.all()``, so a prefetched page
    of users costs no query per user."""
    # Roles are groups: a user model without groups (PermissionsMixin) has none.
    if not user.is_authenticated or not isinstance(user, PermissionsMixin):
        return None
    if user.is_superuser:
        return Role.ADMIN
    names = {group.name for group in user.groups.all()}
    for role in Role:  # strongest first
        if role.value in names:
            return role
    return None


def user_is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Admins see every tenant (no tenant grant needed)."""
    return user_role(user) in EVERY_TENANT_ROLES
