"""The scopes an API client can hold. One constant per capability."""

MEMBERS_READ = "members:read"  # identify members (POS lookup by phone, card, QR)
MEMBERS_WRITE = "members:write"  # enrol members, update profiles, consents
ORDERS_WRITE = "orders:write"  # post orders, refunds, cancellations, activity events
POINTS_WRITE = "points:write"  # hold, capture and release points to pay a basket
MEMBER_TOKENS = "member-tokens:issue"  # the app backend mints tokens for its logged-in user
COUPONS_REDEEM = "coupons:redeem"  # validate, hold and redeem coupons for a basket
COUPONS_ADMIN = "coupons:admin"  # offers, code batches, issuing coupons
ADMIN = "admin"  # earning rules, tiers, stores, adjustments, merges, API clients, privacy
FINANCE_READ = "finance:read"  # liability and activity reports
SEGMENTS_READ = "segments:read"  # attributes, segment counts, samples and exports
SEGMENTS_WRITE = "segments:write"  # create, change and delete segments, uploads, snapshots
CAMPAIGNS_READ = "campaigns:read"  # analysts: campaigns, estimates, previews, results, exports
CAMPAIGNS_WRITE = "campaigns:write"  # marketers: create, edit, launch, pause, resume, cancel
JOURNEYS_READ = "journeys:read"  # journeys, members' progress, results; store events' results
JOURNEYS_WRITE = "journeys:write"  # create, version, activate, pause journeys; store events
# The member app's own key (it may ship inside the app): request and verify one-time login
# codes; the member tokens it gets are revoked with it. Nothing else.
MEMBER_LOGIN = "member-login"

ALL = frozenset(
    {
        MEMBERS_READ,
        MEMBERS_WRITE,
        ORDERS_WRITE,
        POINTS_WRITE,
        MEMBER_TOKENS,
        COUPONS_REDEEM,
        COUPONS_ADMIN,
        ADMIN,
        FINANCE_READ,
        SEGMENTS_READ,
        SEGMENTS_WRITE,
        CAMPAIGNS_READ,
        CAMPAIGNS_WRITE,
        JOURNEYS_READ,
        JOURNEYS_WRITE,
        MEMBER_LOGIN,
    }
)

POS = frozenset({MEMBERS_READ, MEMBERS_WRITE, ORDERS_WRITE, POINTS_WRITE, COUPONS_REDEEM})

# Scopes whose objects span every member of the program (segments count, sample and export
# anyone; campaigns message anyone): a key bound to a store is refused them, whatever scopes
# it holds (it would reach members far beyond its store).
PROGRAM_WIDE = frozenset({SEGMENTS_READ, SEGMENTS_WRITE, CAMPAIGNS_READ, CAMPAIGNS_WRITE})
