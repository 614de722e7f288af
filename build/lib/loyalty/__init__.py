"""Omniloyal: one membership, one points ledger and coupons across every channel."""
