"""What each dashboard role may see and do: one table, checked by every page and action."""

from __future__ import annotations

import enum


class Permission(enum.StrEnum):
    VIEW = "view"  # overview, members, segments, offers, campaigns, settings (read)
    FINANCE = "finance"  # liability and points activity figures, CSV exports of them
    AUDIT = "audit"  # read and export the audit log
    POINTS_ADJUST = "points.adjust"
    MEMBERS_MERGE = "members.merge"
    MEMBERS_PRIVACY = "members.privacy"  # export and erase a member's data
    SEGMENTS_WRITE = "segments.write"
    OFFERS_WRITE = "offers.write"  # offers, code batches, rewards
    CAMPAIGNS_WRITE = "campaigns.write"  # build campaigns and test-send
    CAMPAIGNS_LAUNCH = "campaigns.launch"  # launch, pause, resume, cancel
    JOURNEYS_WRITE = "journeys.write"  # activate, pause and resume journeys
    TEMPLATES_WRITE = "templates.write"
    SETTINGS_WRITE = "settings.write"  # earning rules, tiers, stores, webhooks, consent texts
    API_KEYS = "api-keys"  # create and revoke API keys
    USERS = "users"
    OPERATIONS = "operations"  # queues, failed jobs, dead letters


P = Permission
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "marketer": frozenset(
        {
            P.VIEW,
            P.SEGMENTS_WRITE,
            P.OFFERS_WRITE,
            P.CAMPAIGNS_WRITE,
            P.CAMPAIGNS_LAUNCH,
            P.JOURNEYS_WRITE,
            P.TEMPLATES_WRITE,
        }
    ),
    "analyst": frozenset({P.VIEW, P.FINANCE}),  # reads everything a report needs, changes nothing
    # Support reads the audit log: "who changed this member's points, and why?"
    "support": frozenset({P.VIEW, P.AUDIT, P.POINTS_ADJUST, P.MEMBERS_MERGE, P.MEMBERS_PRIVACY}),
    "finance": frozenset({P.VIEW, P.FINANCE, P.AUDIT}),
}


def allows(role: str, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
