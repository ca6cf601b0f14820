"""Row locks: one way to take them, so every service that serialises on a row takes the same one.

Each contended model has one named lock function owned by the app that owns the model
(``tenant_lock``, ``agent_lock``, ``environment_lock`` in ``apps/tenancy/services.py``;
``runtime_token_lock`` in ``apps/accounts/runtime_tokens.py``), built on :func:`lock_row`.
Services of other apps call those, never ``select_for_update`` on another app's model.

Why one spelling matters: PostgreSQL's ``FOR UPDATE`` also blocks the ``FOR KEY SHARE`` lock
that any insert of a row *referencing* the locked one takes (an audit event naming the
tenant, a flag of the environment). Two services locking the same row, one with ``FOR
UPDATE`` and the joined rows too, the other with ``FOR NO KEY UPDATE`` of the row alone,
serialise differently and deadlocked in the past (see ``environment_move``). So every lock
here is ``FOR NO KEY UPDATE OF`` the row itself: it serialises every change of the row, lets
foreign-key inserts through, and never locks rows joined with ``select_related``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


def lock_row(source: type[M] | QuerySet[M], pk: Any, *, related: Sequence[str] = ()) -> M:
    """Re-read the row ``pk`` of ``source`` (a model, or a queryset to narrow it) under
    ``SELECT … FOR NO KEY UPDATE OF <its table>`` and return it, with ``related`` joined in
    (``select_related``, not locked). The lock lasts until the caller's transaction ends;
    calling it outside one raises ``TransactionManagementError`` (as ``select_for_update``
    does). Raises the model's ``DoesNotExist`` when there is no such row. SQLite ignores row
    locks (it serialises writers per database), so this is a plain read there."""
    queryset = source if isinstance(source, QuerySet) else source._default_manager.all()
    queryset = queryset.select_for_update(of=("self",), no_key=True)
    if related:
        queryset = queryset.select_related(*related)
    return queryset.get(pk=pk)
