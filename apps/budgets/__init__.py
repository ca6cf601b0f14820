"""Budgets: limits on cost, tokens, requests and tool calls per scope and calendar window,
with threshold alerts, block or degrade at the limit, and strict reservations (docs/budgets.md)."""
