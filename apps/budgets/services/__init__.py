"""Every change of budgets (docs/budgets.md, docs/decisions/0025):

- ``definitions``: budgets created, changed, deleted by operators (authorised, audited);
- ``consumption``: telemetry counted into budgets as it is ingested, thresholds raised once per
  window and subject, exhaustion announced, the window roll;
- ``reservations``: strict budgets' reserve and settle, the runtimes' hot path.

Counting is exact under concurrency: consumption is added with one ``INSERT … ON CONFLICT DO
UPDATE SET x = x + excluded.x`` per counter row, and a reservation is one conditional
``UPDATE … WHERE consumed + reserved + estimate <= limit`` per strict budget in one
transaction."""

from .consumption import (
    budgets_roll,
    consumption_apply,
    consumption_ingested,
    percent_used,
    register,
)
from .definitions import budget_create, budget_delete, budget_update, budget_validate
from .reservations import (
    ReserveAnswer,
    SettleAnswer,
    UnknownAgent,
    UnknownReservation,
    amounts_parse,
    budget_reserve,
    budget_settle,
    release_requests,
    reservation_ttl,
    reservations_expire,
    reservations_purge,
)

__all__ = [
    "ReserveAnswer",
    "SettleAnswer",
    "UnknownAgent",
    "UnknownReservation",
    "amounts_parse",
    "budget_create",
    "budget_delete",
    "budget_reserve",
    "budget_settle",
    "budget_update",
    "budget_validate",
    "budgets_roll",
    "consumption_apply",
    "consumption_ingested",
    "percent_used",
    "register",
    "release_requests",
    "reservation_ttl",
    "reservations_expire",
    "reservations_purge",
]
