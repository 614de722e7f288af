"""Marketing campaigns: segments, offers, sends, control groups (next milestone)."""
