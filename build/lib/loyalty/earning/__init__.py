"""Orders, refunds and earning rules: how points are earned in every channel."""
