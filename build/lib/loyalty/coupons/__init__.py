"""Coupons and offers: offers, codes, wallet, rewards, validation and redemption."""
