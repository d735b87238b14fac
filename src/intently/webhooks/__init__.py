"""Webhooks: endpoints per workspace, an outbox of deliveries, a dispatcher that signs and sends."""
