"""Notifications: SMS (Twilio), email and push deliveries fed by the outbox (next milestone)."""
