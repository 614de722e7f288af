"""API clients (keys with scopes and store binding) and member tokens."""
