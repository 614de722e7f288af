"""Outgoing webhooks for integrators: subscriptions to outbox topics, signed deliveries with
retries, visible over the admin API (see operations.py and docs/architecture.md)."""
