"""Stores (own and partner) and the sales channels members buy through."""
