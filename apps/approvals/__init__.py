"""Human-in-the-loop approvals: queues, requests, decisions, expiry, escalation, delivery to
runtimes (docs/approvals.md)."""
