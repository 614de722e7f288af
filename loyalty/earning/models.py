"""Earning models (being built)."""
