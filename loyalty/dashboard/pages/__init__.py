"""The dashboard pages, one module per area; importing them adds their routes."""

PAGE_MODULES = (
    "access",
    "audit",
    "campaigns",
    "journeys",
    "members",
    "offers",
    "operations",
    "overview",
    "segments",
    "settings",
)
