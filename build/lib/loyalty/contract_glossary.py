"""What the API's recurring field names mean, for fields whose schema gives no description.

One glossary instead of the same sentence on every schema that has the field: a field
name means the same thing everywhere in the API (loyalty.contract applies it to every
component schema of the document; a description written on the field itself wins).
"""

from __future__ import annotations

FIELDS: dict[str, str] = {
    "amount_minor": "An amount of money in minor units (cents) of `currency`, an integer.",
    "app_user": "The member's user id in your app (an identity kind).",
    "available": "Points the member can spend now: balance less held points.",
    "balance": "Points in the member's account (available and held; pending excluded).",
    "breakdown": "The points per earning rule that produced them.",
    "capture_transaction_id": "The ledger transaction that spent the captured points.",
    "captured": "Points spent by the capture (the rest went back to available).",
    "card": "A loyalty card number (an identity kind).",
    "category": "The product category, as earning rules and offers name it.",
    "channel": "Where it happens: `online` (web shop), `app`, `store` (needs `store_id`) "
    "or `partner` (needs `store_id`).",
    "checkout_ref": "Names the coupon hold: capture or release it with this.",
    "closed_at": "When the hold was captured, released or expired.",
    "codes": "Coupon codes as the customer typed them (case and dashes are ignored).",
    "coupon_codes": "Coupon codes to redeem with the order, all or none.",
    "created_at": "When it was created (UTC, ISO 8601).",
    "currency": "ISO 4217 currency code, e.g. `EUR`; amounts are in its minor units.",
    "debt": "Points owed after a claw-back; later earnings repay it first.",
    "discount_minor": "The discount in minor units of `currency`.",
    "email": "An email address (an identity kind; compared case-insensitively).",
    "expires_at": "When it stops being valid (UTC, ISO 8601).",
    "held": "Points reserved by active holds (a till's checkout); not spendable meanwhile.",
    "id": "The id Omniloyal gave it.",
    "identities": "The member's identities (email, phone, card, app user), each unique.",
    "index": "A line of the order, by its position in the order's `lines` (from 0).",
    "lines": "The basket's lines.",
    "member": "Names the member: by `member_id` or by one identity (enrolled if unknown).",
    "member_id": "The member's id (a merged member's id still names the survivor).",
    "member_token": "A member token from the member app (names its member).",
    "order_id": "Your id of the order (unique per API client): retries with it replay.",
    "order_ref": "Your reference of the order or checkout the coupons are used for.",
    "occurred_at": "When it happened, with its UTC offset (default: when received).",
    "pending_until": "When the order's pending points become available.",
    "points_earned": "Points the order earned (all rules together).",
    "points_reversed": "Points taken back by refunds and cancellation so far.",
    "refunded_minor": "How much of the order was refunded so far, in minor units.",
    "subtotal_minor": "The lines' total before discounts, in minor units.",
    "total_minor": "What the customer paid: subtotal less discounts, in minor units.",
    "pending": "Points earned but not yet available (a return window not yet over).",
    "phone": "A phone number: E.164 (+33612345678) or national with `default_region`.",
    "points": "A number of points, an integer.",
    "profile": "Name, birthday, locale, timezone, consents and attributes.",
    "qr_token": "The code the member app shows at the till (`POST /v1/me/qr`); one use.",
    "quantity": "Units of the line, an integer.",
    "reference": "Your free-text reference for it (e.g. the till and basket).",
    "redemptions": "The coupon uses made, one per code.",
    "refund_id": "Your id of the refund (unique per order): retries with it replay.",
    "sku": "Your product id.",
    "status": "The current state.",
    "store_id": "The store's code (a store-bound key: its own store by default).",
    "total_discount_minor": "The discount of all codes together, in minor units.",
    "ttl_seconds": "How long the hold lasts before it releases itself, in seconds.",
    "unit_price_minor": "The price of one unit in minor units (cents) of `currency`.",
}
