"""Tiers: thresholds on qualifying points or spend over a rolling window, and benefits."""
