"""The evidence runtimes report, and the rollups read from it (docs/decisions/0021).

* ``RequestRecord``: one request as a runtime reported it. Raw, short-lived
  (``TELEMETRY_RAW_RETENTION_DAYS``). On PostgreSQL a table partitioned by day on
  ``started_at`` (``PARTITION BY RANGE``, one partition per UTC day, named
  ``telemetry_requestrecord_pYYYYMMDD``), so retention drops whole partitions; on SQLite (the
  embedded default) a plain table. Its primary key on PostgreSQL is ``(id, started_at)``
  (a partitioned table's keys must contain the partition key); ``id`` alone is unique too.
* ``RecordKey``: the idempotency key of a record, ``(tenant, request_id)`` unique, which the
  partitioned table cannot carry. Ingestion inserts here first (``ON CONFLICT DO NOTHING``)
  and keeps only the records whose key was new.
* ``BucketReceipt``: the idempotency key of a pre-aggregated 10-second bucket,
  ``(tenant, environment, instance_id, bucket_start, agent, version_digest, variant)``.
* ``MinuteRollup`` / ``HourRollup``: per (tenant, agent, environment, version_digest, variant,
  minute or hour): counts by outcome, a DDSketch of latency (protobuf bytes), sums. Kept
  90 days (minutes, ``TELEMETRY_MINUTE_RETENTION_DAYS``) and forever (hours).

Raw records and keys hold plain ids without database foreign-key constraints (fast inserts,
partition drops that need no checks); ingestion resolves every id from the token's scope.
"""

from __future__ import annotations

from django.db import models


class Variant(models.TextChoices):
    """Which version of the agent served the request."""

    STABLE = "stable"
    CANDIDATE = "candidate"
    SHADOW = "shadow"


class Outcome(models.TextChoices):
    """How the request ended."""

    SUCCESS = "success"
    ERROR = "error"
    POLICY_DENIED = "policy_denied"
    ESCALATED = "escalated"
    BUDGET_BLOCKED = "budget_blocked"
    KILLED = "killed"


class Thumbs(models.TextChoices):
    UP = "up"
    DOWN = "down"


# Rollup counter column of each outcome (``count_<outcome>``).
OUTCOME_COLUMNS = {outcome.value: f"count_{outcome.value}" for outcome in Outcome}
# Rollup columns that add up across rows besides ``requests`` and the outcome counts: a
# merge of two rollups (a batch into a row, rows into a chart's total) sums each of them.
METRIC_COLUMNS = (
    "latency_sum_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "steps",
    "tool_calls",
    "tool_failures",
    "wrong_actions",
    "feedback_up",
    "feedback_down",
    "feedback_score_sum",
    "feedback_score_count",
    "quality_sum",
    "quality_count",
)
# Outcomes that count as errors in an error rate: the agent failed the request. A policy
# denial, an escalation, a budget block or a kill switch is the control working, not an error.
ERROR_OUTCOMES = (Outcome.ERROR.value,)


class RequestRecord(models.Model):
    """One request, as reported. ``tenant`` and ``environment`` come from the runtime token,
    never from the body; ``agent`` from the body's slug, resolved in the token's scope.

    Units: ``latency_ms`` milliseconds; ``cost_usd`` US dollars (Decimal, 8 places);
    ``started_at`` timezone-aware UTC. ``end_user_hash`` is what the runtime hashed; a raw
    end-user id is never sent or stored."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(
        "tenancy.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    agent = models.ForeignKey(
        "tenancy.Agent", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    request_id = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128, blank=True, default="")
    end_user_hash = models.CharField(max_length=128, blank=True, default="")
    version_digest = models.CharField(max_length=80, blank=True, default="")
    variant = models.CharField(max_length=16, choices=Variant.choices)
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField()
    steps = models.PositiveIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    tool_failures = models.PositiveIntegerField(default=0)
    wrong_actions = models.PositiveIntegerField(
        default=0, help_text="actions the runtime later judged wrong (e.g. a refund not owed)"
    )
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    model = models.CharField(max_length=120, blank=True, default="")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error_code = models.CharField(max_length=120, blank=True, default="")
    trace_id = models.CharField(max_length=128, blank=True, default="")
    feedback_thumbs = models.CharField(  # noqa: DJ001 - null: no feedback, unlike an empty string
        max_length=4, choices=Thumbs.choices, null=True, blank=True
    )
    feedback_score = models.FloatField(null=True, blank=True)
    quality_score = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # the records explorer: one agent in one environment, newest first (keyset)
            models.Index(
                fields=["tenant", "agent", "environment", "-started_at", "-id"],
                name="telemetry_rr_scope_time",
            ),
            models.Index(fields=["tenant", "session_id"], name="telemetry_rr_session"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} ({self.outcome})"


class RecordKey(models.Model):
    """The idempotency key of a request record: one row per ``(tenant, request_id)`` ever
    accepted within the raw retention window (older keys are deleted with their records;
    a retry that old is refused by the ``started_at`` window anyway)."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(
        "tenancy.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    request_id = models.CharField(max_length=128)
    started_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "request_id"], name="telemetry_recordkey_unique"
            ),
        ]
        indexes = [models.Index(fields=["started_at"], name="telemetry_rk_started")]

    def __str__(self) -> str:
        return self.request_id


class BucketReceipt(models.Model):
    """The idempotency key of one pre-aggregated 10-second bucket a runtime instance sent."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(
        "tenancy.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    instance_id = models.CharField(max_length=128)
    bucket_start = models.DateTimeField()
    agent = models.ForeignKey(
        "tenancy.Agent", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    version_digest = models.CharField(max_length=80, blank=True, default="")
    variant = models.CharField(max_length=16, choices=Variant.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "tenant",
                    "environment",
                    "instance_id",
                    "bucket_start",
                    "agent",
                    "version_digest",
                    "variant",
                ],
                name="telemetry_bucketreceipt_unique",
            ),
        ]
        indexes = [models.Index(fields=["bucket_start"], name="telemetry_br_start")]

    def __str__(self) -> str:
        return f"{self.instance_id}@{self.bucket_start:%Y-%m-%dT%H:%M:%S}"


class Rollup(models.Model):
    """The shape of a rollup row (abstract): one (tenant, agent, environment, version_digest,
    variant, ``bucket_start``) with

    * ``requests`` and ``count_<outcome>`` for each ``Outcome`` (their sum is ``requests``);
    * ``latency_sketch``: a DDSketch (``ddsketch`` package, relative accuracy
      ``apps.telemetry.sketches.RELATIVE_ACCURACY``) of ``latency_ms``, serialised as
      DDSketch protobuf (``apps.telemetry.sketches.sketch_from_bytes``); empty = no values;
      ``latency_sum_ms`` for means;
    * ``tokens_in``/``tokens_out``, ``cost_usd`` (Decimal USD), ``steps``, ``tool_calls``,
      ``tool_failures``, ``wrong_actions`` (actions the runtime later judged wrong);
    * ``feedback_up``/``feedback_down`` (thumbs), ``feedback_score_sum``/``_count``,
      ``quality_sum``/``quality_count`` (means = sum / count).

    Rows change only through ``apps.telemetry.services`` (upserts under row locks)."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey("tenancy.Agent", on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.CASCADE, related_name="+"
    )
    version_digest = models.CharField(max_length=80, blank=True, default="")
    variant = models.CharField(max_length=16, choices=Variant.choices)
    bucket_start = models.DateTimeField()
    requests = models.BigIntegerField(default=0)
    count_success = models.BigIntegerField(default=0)
    count_error = models.BigIntegerField(default=0)
    count_policy_denied = models.BigIntegerField(default=0)
    count_escalated = models.BigIntegerField(default=0)
    count_budget_blocked = models.BigIntegerField(default=0)
    count_killed = models.BigIntegerField(default=0)
    latency_sketch = models.BinaryField(default=b"")
    latency_sum_ms = models.BigIntegerField(default=0)
    tokens_in = models.BigIntegerField(default=0)
    tokens_out = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=8, default=0)
    steps = models.BigIntegerField(default=0)
    tool_calls = models.BigIntegerField(default=0)
    tool_failures = models.BigIntegerField(default=0)
    wrong_actions = models.BigIntegerField(default=0)
    feedback_up = models.BigIntegerField(default=0)
    feedback_down = models.BigIntegerField(default=0)
    feedback_score_sum = models.FloatField(default=0)
    feedback_score_count = models.BigIntegerField(default=0)
    quality_sum = models.FloatField(default=0)
    quality_count = models.BigIntegerField(default=0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.agent_id}/{self.environment_id} {self.variant} @ {self.bucket_start}"


class MinuteRollup(Rollup):
    """A rollup per minute (``bucket_start`` on the minute, UTC); kept
    ``TELEMETRY_MINUTE_RETENTION_DAYS`` (90 by default)."""

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "tenant",
                    "agent",
                    "environment",
                    "version_digest",
                    "variant",
                    "bucket_start",
                ],
                name="telemetry_minuterollup_key",
            ),
        ]
        indexes = [
            models.Index(
                fields=["tenant", "agent", "environment", "bucket_start"],
                name="telemetry_mr_scope_time",
            ),
            models.Index(fields=["bucket_start"], name="telemetry_mr_start"),
        ]


class HourRollup(Rollup):
    """A rollup per hour (``bucket_start`` on the hour, UTC); kept forever."""

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "tenant",
                    "agent",
                    "environment",
                    "version_digest",
                    "variant",
                    "bucket_start",
                ],
                name="telemetry_hourrollup_key",
            ),
        ]
        indexes = [
            models.Index(
                fields=["tenant", "agent", "environment", "bucket_start"],
                name="telemetry_hr_scope_time",
            ),
        ]
