"""Telemetry: the evidence runtimes report (request records, pre-aggregated buckets) and the
minute and hour rollups every chart and canary judgment reads. Facts only: judgments built
on them (budgets, rollouts) live in higher apps. See docs/decisions/0021."""
