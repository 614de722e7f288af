"""Members, their identities (phone, email, app account, card), profiles, merges, privacy."""
