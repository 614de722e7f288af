"""The dashboard pages, one module per area; importing them adds their routes."""

PAGE_MODULES = (
    "access",
    "audit",
    "campaigns",
    "consent_texts",
    "journeys",
    "members",
    "offers",
    "operations",
    "overview",
    "rules",
    "segments",
    "settings",
)
