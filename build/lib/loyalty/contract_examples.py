"""Request and response examples of the main flows, by operationId (see loyalty.contract).

Recorded from a real run of the flows (enrol, identify, order, balance, validate, redeem,
coupon hold and capture, points hold and capture, refund, member token), so they match
the schemas; the tokens and keys in them are not valid anywhere.
"""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[str, dict[str, Any]] = {
    "enrol": {
        "request": {
            "identities": {"email": "ada@example.com", "phone": "+33612345678"},
            "profile": {"name": "Ada Lovelace"},
            "channel": "store",
            "store_id": "PAR-01",
        },
        "responses": {
            201: {
                "created": True,
                "member": {"id": 1, "masked_name": "A*** L***", "status": "active", "tier": None},
            }
        },
    },
    "identify": {
        "request": {"phone": "06 12 34 56 78", "default_region": "FR"},
        "responses": {
            200: {
                "balance": {
                    "available": 0,
                    "balance": 0,
                    "debt": 0,
                    "held": 0,
                    "member_id": 1,
                    "pending": 0,
                },
                "member": {"id": 1, "masked_name": "A*** L***", "status": "active", "tier": None},
            }
        },
    },
    "post_order": {
        "request": {
            "order_id": "PAR-01-2026-000123",
            "channel": "store",
            "store_id": "PAR-01",
            "member": {"member_id": 1},
            "currency": "EUR",
            "lines": [
                {"sku": "SHOE-1", "category": "shoes", "quantity": 1, "unit_price_minor": 8000},
                {"sku": "SOCK-1", "category": "socks", "quantity": 2, "unit_price_minor": 500},
            ],
        },
        "responses": {
            201: {
                "breakdown": [
                    {"kind": "base_rate", "name": "1 point per euro", "points": 90, "rule_id": 1}
                ],
                "cancellation": None,
                "channel": "store",
                "coupons": [],
                "currency": "EUR",
                "discount_minor": 0,
                "id": 1,
                "member_enrolled": False,
                "member_id": 1,
                "occurred_at": "2026-11-30T14:55:01.779380+00:00",
                "order_id": "PAR-01-2026-000123",
                "pending_until": None,
                "points_earned": 90,
                "points_reversed": 0,
                "refunded_minor": 0,
                "status": "posted",
                "store_id": "PAR-01",
                "subtotal_minor": 9000,
                "total_minor": 9000,
            }
        },
    },
    "member_balance": {
        "responses": {
            200: {
                "available": 90,
                "balance": 90,
                "debt": 0,
                "held": 0,
                "member_id": 1,
                "pending": 0,
            }
        }
    },
    "validate_codes": {
        "request": {
            "codes": ["SPRING10"],
            "channel": "store",
            "store_id": "PAR-01",
            "currency": "EUR",
            "member_id": 1,
            "lines": [
                {"sku": "SHOE-1", "category": "shoes", "quantity": 1, "unit_price_minor": 8000}
            ],
        },
        "responses": {
            200: {
                "bonus_points": 0,
                "line_discounts": [{"discount_minor": 800, "line": 0}],
                "points_multiplier_pct": 100,
                "results": [
                    {
                        "applies": True,
                        "bonus_points": 0,
                        "code": "SPRING10",
                        "discount_minor": 800,
                        "line_discounts": [{"discount_minor": 800, "line": 0}],
                        "offer": {
                            "id": 1,
                            "kind": "percent",
                            "name": "10 % off shoes",
                            "version": 1,
                        },
                        "points_multiplier_pct": 100,
                        "reasons": [],
                    }
                ],
                "total_discount_minor": 800,
            }
        },
    },
    "redeem": {
        "request": {
            "codes": ["SPRING10"],
            "channel": "store",
            "store_id": "PAR-01",
            "currency": "EUR",
            "member_id": 1,
            "lines": [
                {"sku": "SHOE-1", "category": "shoes", "quantity": 1, "unit_price_minor": 8000}
            ],
            "order_ref": "PAR-01-2026-000124",
        },
        "responses": {
            201: {
                "bonus_points": 0,
                "checkout_ref": "e1a15d33431f41f69bc397ea6feacebf",
                "line_discounts": [{"discount_minor": 800, "line": 0}],
                "points_multiplier_pct": 100,
                "redemptions": [
                    {
                        "bonus_points": 0,
                        "campaign_id": None,
                        "channel": "store",
                        "checkout_ref": "e1a15d33431f41f69bc397ea6feacebf",
                        "closed_at": None,
                        "code": "SPRING10",
                        "created_at": "2026-11-30T14:55:01.850620+00:00",
                        "currency": "EUR",
                        "discount_minor": 800,
                        "expires_at": None,
                        "id": 1,
                        "line_discounts": [{"discount_minor": 800, "line": 0}],
                        "member_id": 1,
                        "offer_id": 1,
                        "offer_version": 1,
                        "order_id": None,
                        "order_ref": "PAR-01-2026-000124",
                        "points_multiplier_pct": 100,
                        "redeemed_at": "2026-11-30T14:55:01.850620+00:00",
                        "source_ref": None,
                        "source_type": None,
                        "status": "redeemed",
                        "store_id": "PAR-01",
                    }
                ],
                "replayed": False,
                "status": "redeemed",
                "total_discount_minor": 800,
            }
        },
    },
    "hold": {
        "request": {
            "codes": ["SPRING10"],
            "channel": "store",
            "store_id": "PAR-01",
            "currency": "EUR",
            "member_id": 1,
            "lines": [
                {"sku": "SHOE-1", "category": "shoes", "quantity": 1, "unit_price_minor": 8000}
            ],
            "order_ref": "PAR-01-2026-000125",
            "ttl_seconds": 900,
        },
        "responses": {
            201: {
                "bonus_points": 0,
                "checkout_ref": "9ea9b870df27445ea1b3675c7bfa54cb",
                "line_discounts": [{"discount_minor": 800, "line": 0}],
                "points_multiplier_pct": 100,
                "redemptions": [
                    {
                        "bonus_points": 0,
                        "campaign_id": None,
                        "channel": "store",
                        "checkout_ref": "9ea9b870df27445ea1b3675c7bfa54cb",
                        "closed_at": None,
                        "code": "SPRING10",
                        "created_at": "2026-11-30T14:55:01.868604+00:00",
                        "currency": "EUR",
                        "discount_minor": 800,
                        "expires_at": "2026-11-30T15:10:01.868604+00:00",
                        "id": 2,
                        "line_discounts": [{"discount_minor": 800, "line": 0}],
                        "member_id": 1,
                        "offer_id": 1,
                        "offer_version": 1,
                        "order_id": None,
                        "order_ref": "PAR-01-2026-000125",
                        "points_multiplier_pct": 100,
                        "redeemed_at": None,
                        "source_ref": None,
                        "source_type": None,
                        "status": "held",
                        "store_id": "PAR-01",
                    }
                ],
                "replayed": False,
                "status": "held",
                "total_discount_minor": 800,
            }
        },
    },
    "capture": {
        "request": {"order_ref": "PAR-01-2026-000125"},
        "responses": {
            200: {
                "bonus_points": 0,
                "checkout_ref": "9ea9b870df27445ea1b3675c7bfa54cb",
                "line_discounts": [{"discount_minor": 800, "line": 0}],
                "points_multiplier_pct": 100,
                "redemptions": [
                    {
                        "bonus_points": 0,
                        "campaign_id": None,
                        "channel": "store",
                        "checkout_ref": "9ea9b870df27445ea1b3675c7bfa54cb",
                        "closed_at": None,
                        "code": "SPRING10",
                        "created_at": "2026-11-30T14:55:01.868604+00:00",
                        "currency": "EUR",
                        "discount_minor": 800,
                        "expires_at": "2026-11-30T15:10:01.868604+00:00",
                        "id": 2,
                        "line_discounts": [{"discount_minor": 800, "line": 0}],
                        "member_id": 1,
                        "offer_id": 1,
                        "offer_version": 1,
                        "order_id": None,
                        "order_ref": "PAR-01-2026-000125",
                        "points_multiplier_pct": 100,
                        "redeemed_at": "2026-11-30T14:55:01.874059+00:00",
                        "source_ref": None,
                        "source_type": None,
                        "status": "redeemed",
                        "store_id": "PAR-01",
                    }
                ],
                "replayed": False,
                "status": "redeemed",
                "total_discount_minor": 800,
            }
        },
    },
    "create_hold": {
        "request": {"points": 50, "ttl_seconds": 600, "store_id": "PAR-01", "reference": "till-7"},
        "responses": {
            201: {
                "capture_transaction_id": None,
                "captured": 0,
                "closed_at": None,
                "created_at": "2026-11-30T14:55:01.884523+00:00",
                "expires_at": "2026-11-30T15:05:01.884523+00:00",
                "id": 1,
                "member_id": 1,
                "order_id": None,
                "points": 50,
                "reference": "till-7",
                "returned": 0,
                "status": "active",
                "store_id": "PAR-01",
            }
        },
    },
    "capture_hold": {
        "request": {"points": 50, "order_id": "PAR-01-2026-000123"},
        "responses": {
            200: {
                "capture_transaction_id": 2,
                "captured": 50,
                "closed_at": "2026-11-30T14:55:01.898183+00:00",
                "created_at": "2026-11-30T14:55:01.884523+00:00",
                "expires_at": "2026-11-30T15:05:01.884523+00:00",
                "id": 1,
                "member_id": 1,
                "order_id": "PAR-01-2026-000123",
                "points": 50,
                "reference": "till-7",
                "returned": 0,
                "status": "captured",
                "store_id": "PAR-01",
            }
        },
    },
    "refund_order": {
        "request": {"refund_id": "PAR-01-R-77", "lines": [{"index": 1, "quantity": 1}]},
        "responses": {
            201: {
                "already_expired": 0,
                "amount_minor": 500,
                "clawed_back": 0,
                "created_at": "2026-11-30T14:55:01.916269+00:00",
                "forgiven": 0,
                "lines": [{"amount_minor": 500, "index": 1, "quantity": 1}],
                "order_id": "PAR-01-2026-000123",
                "order_status": "partially_refunded",
                "points_returned": 2,
                "points_reversed": 5,
                "policy": "cap-at-zero",
                "refund_id": "PAR-01-R-77",
                "revoked_available": 5,
                "revoked_pending": 0,
            }
        },
    },
    "issue_member_token": {
        "request": {"member_id": 1},
        "responses": {
            201: {
                "expires_at": "2026-11-30T15:10:01.954632+00:00",
                "member_id": 1,
                "token": "omt_eyJtIjoxfQ.example.not-a-real-signature",
            }
        },
    },
}
