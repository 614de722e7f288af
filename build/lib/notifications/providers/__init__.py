"""Channel providers: one adapter per external service behind the `Provider` protocol."""
