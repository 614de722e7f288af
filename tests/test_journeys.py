"""The three integrators' journeys, walked using only what /openapi.json declares.

Every call is named by its operationId and built from the document: the method and path
come from it, the credential from the operation's `security` (an API key holding exactly
the declared scope, or a member token), an Idempotency-Key only where the document
declares one, and the answer must carry a status the operation documents (never only via
`default`) with the media type declared for it. Lists are followed page by page through
`next_cursor`. Nothing here knows a route that the document doesn't say.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from loyalty.auth import scopes
from tests.earning.factories import base_rate

PROBLEM = "application/problem+json"


class Api:
    """A caller that knows only the OpenAPI document."""

    def __init__(self, client: Any, document: dict[str, Any], make: Any) -> None:
        self.client, self.make = client, make
        self.operations: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for path, item in document["paths"].items():
            for method, operation in item.items():
                if isinstance(operation, dict) and "operationId" in operation:
                    self.operations[operation["operationId"]] = (method, path, operation)
        self.keys: dict[str, dict[str, str]] = {}
        self.member_token: dict[str, str] | None = None

    def credential(self, operation: dict[str, Any]) -> dict[str, str]:
        [requirement] = operation["security"]
        [(scheme, needed)] = requirement.items()
        if scheme == "MemberToken":
            assert self.member_token is not None, "sign the member in first"
            return self.member_token
        [scope] = needed
        if scope not in self.keys:  # a key holding only what the document asks for
            self.keys[scope] = self.make.api_key(scope)
        return self.keys[scope]

    def call(
        self,
        operation_id: str,
        body: dict[str, Any] | None = None,
        *,
        query: dict[str, Any] | None = None,
        expect: int | None = None,
        **path_params: Any,
    ) -> Any:
        method, template, operation = self.operations[operation_id]
        path = re.sub(r"\{(\w+)\}", lambda m: str(path_params.pop(m.group(1))), template)
        assert not path_params, f"{operation_id} takes no {sorted(path_params)}"
        headers = dict(self.credential(operation))
        declared = {p["name"]: p for p in operation.get("parameters", [])}
        if "Idempotency-Key" in declared:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        for name in query or {}:
            assert declared.get(name, {}).get("in") == "query", f"{operation_id}: {name}?"
        if body is not None:
            assert "requestBody" in operation, f"{operation_id} takes no body"
        response = self.client.open(
            path, method=method.upper(), json=body, query_string=query, headers=headers
        )
        status = str(response.status_code)
        assert status in operation["responses"], (operation_id, status, response.json)
        if expect is not None:
            assert response.status_code == expect, (operation_id, response.json)
        if response.status_code >= 400:
            assert response.mimetype == PROBLEM
        return response

    def every(self, operation_id: str, *, limit: int = 2, **params: Any) -> list[Any]:
        """Every item of a list, following next_cursor (small pages, to walk several)."""
        items, cursor = [], None
        while True:
            query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            page = self.call(operation_id, query=query, expect=200, **params).json
            assert set(page) == {"items", "next_cursor"}
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items


@pytest.fixture
def api(app, client, make) -> Api:
    document = client.get("/openapi.json").json
    return Api(client, document, make)


LINE = {"sku": "SHOE-1", "category": "shoes", "quantity": 1, "unit_price_minor": 8_000}


def _store(api: Api) -> str:
    api.call(
        "create_store",
        {"id": "PAR-01", "name": "Paris", "timezone": "Europe/Paris", "country": "FR"},
        expect=201,
    )
    return "PAR-01"


def test_the_marketer_journey(api: Api) -> None:
    """Rules, tiers, an offer with codes, coupons issued to members, and the results."""
    api.call(
        "create_rule",
        {"name": "1 per euro", "kind": "base_rate", "currency": "EUR", "points": 1},
        expect=201,
    )
    api.call(
        "create_tier",
        {
            "code": "gold",
            "name": "Gold",
            "rank": 1,
            "threshold": 1_000,
            "basis": "qualifying_points",
        },
        expect=201,
    )
    members = [
        api.call("enrol", {"identities": {"email": f"m{i}@example.com"}}, expect=201).json
        for i in range(3)
    ]
    offer = api.call(
        "create_offer",
        {"name": "Spring 15 %", "kind": "percent", "percent_bp": 1500, "currency": "EUR"},
        expect=201,
    ).json
    batch = api.call(
        "generate_batch", {"count": 5, "prefix": "SP"}, offer_id=offer["id"], expect=201
    ).json
    assert api.call("get_batch", batch_id=batch["id"], expect=200).json["created_count"] == 5
    api.call("create_shared_code", {"code": "SPRING15"}, offer_id=offer["id"], expect=201)
    issued = api.call(
        "issue",
        {"member_ids": [m["member"]["id"] for m in members]},
        offer_id=offer["id"],
        expect=201,
    ).json
    assert len(issued["items"]) == 3
    wallet = api.every("member_coupons", member_id=members[0]["member"]["id"], limit=1)
    assert [c["status"] for c in wallet] == ["available"]
    assert [o["id"] for o in api.every("list_offers", limit=1)] == [offer["id"]]
    assert api.every("list_rules")
    assert api.call("offer_stats", offer_id=offer["id"], expect=200).json


def test_the_pos_journey(api: Api, make) -> None:
    """Identify by phone -> validate -> hold points -> order with coupons -> capture ->
    refund, the points and coupons agreeing at every step."""
    store = _store(api)
    base_rate()
    member = api.call(
        "enrol",
        {"identities": {"phone": "+33612345678"}, "store_id": store, "channel": "store"},
        expect=201,
    ).json["member"]
    offer = api.call(
        "create_offer",
        {"name": "10 %", "kind": "percent", "percent_bp": 1000, "currency": "EUR"},
        expect=201,
    ).json
    api.call("create_shared_code", {"code": "TILL10"}, offer_id=offer["id"], expect=201)
    api.call(
        "post_order",
        {
            "order_id": "EARLIER-1",
            "channel": "store",
            "store_id": store,
            "currency": "EUR",
            "member": {"member_id": member["id"]},
            "lines": [{**LINE, "unit_price_minor": 20_000}],
        },
        expect=201,
    )

    found = api.call(
        "identify", {"phone": "06 12 34 56 78", "default_region": "FR"}, expect=200
    ).json
    assert found["member"]["id"] == member["id"] and found["balance"]["available"] == 200
    basket = {"channel": "store", "store_id": store, "currency": "EUR", "lines": [LINE]}
    checked = api.call(
        "validate_codes", {**basket, "codes": ["TILL10"], "member_id": member["id"]}, expect=200
    ).json
    assert checked["total_discount_minor"] == 800
    hold = api.call(
        "create_hold", {"points": 100, "store_id": store}, member_id=member["id"], expect=201
    ).json
    order = api.call(
        "post_order",
        {
            "order_id": "TILL-7-000123",
            "channel": "store",
            "store_id": store,
            "currency": "EUR",
            "member": {"member_id": member["id"]},
            "lines": [LINE],
            "coupon_codes": ["TILL10"],
        },
        expect=201,
    ).json
    assert order["points_earned"] == 72  # on the discounted 72 euros
    api.call("capture_hold", {"order_id": order["order_id"]}, hold_id=hold["id"], expect=200)
    balance = api.call("member_balance", member_id=member["id"], expect=200).json
    assert balance["balance"] == 200 - 100 + 72

    refund = api.call(
        "refund_order",
        {"refund_id": "R-1", "lines": [{"index": 0, "quantity": 1}]},
        order_id=order["order_id"],
        expect=201,
    ).json
    assert refund["points_returned"] == 100 and refund["points_reversed"] == 72
    after = api.call("member_balance", member_id=member["id"], expect=200).json
    assert after["balance"] == 200


def test_the_member_app_journey(api: Api) -> None:
    """The app backend mints a member token; the app shows home, balance, history, wallet
    and rewards, buys a reward, checks a code and shows a QR code for the till."""
    base_rate()
    member = api.call(
        "enrol", {"identities": {"app_user": "app-42", "email": "ada@example.com"}}, expect=201
    ).json["member"]
    for i in range(3):
        api.call(
            "post_order",
            {
                "order_id": f"APP-{i}",
                "channel": "app",
                "currency": "EUR",
                "member": {"member_id": member["id"]},
                "lines": [LINE],
            },
            expect=201,
        )
    offer = api.call(
        "create_offer",
        {"name": "5 euros off", "kind": "fixed_amount", "amount_minor": 500, "currency": "EUR"},
        expect=201,
    ).json
    reward = api.call(
        "create_reward",
        {"offer_id": offer["id"], "name": "5 euros", "points_cost": 100},
        expect=201,
    ).json

    minted = api.call("issue_member_token", {"app_user": "app-42"}, expect=201).json
    api.member_token = {"Authorization": f"Bearer {minted['token']}"}

    home = api.call("me", expect=200).json
    assert home["member_id"] == member["id"] and home["balance"]["available"] == 240
    assert api.call("my_balance", expect=200).json["balance"] == 240
    assert len(api.every("my_history", limit=2)) == 3
    assert [r["id"] for r in api.every("my_rewards")] == [reward["id"]]
    coupon = api.call("redeem_reward", reward_id=reward["id"], expect=201).json
    wallet = api.every("my_coupons")
    assert [c["code"] for c in wallet] == [coupon["code"]]
    checked = api.call(
        "my_validate",
        {"codes": [coupon["code"]], "channel": "app", "currency": "EUR", "lines": [LINE]},
        expect=200,
    ).json
    assert checked["total_discount_minor"] == 500
    assert api.call("my_qr", expect=201).json["token"]
    assert api.call("my_balance", expect=200).json["balance"] == 140


def test_a_call_without_the_declared_credential_is_refused(api: Api, make) -> None:
    """The declared scope is needed and enough: another scope is a documented 403."""
    method, path, operation = api.operations["member_balance"]
    other = make.api_key(scopes.COUPONS_ADMIN)
    response = api.client.open(path.replace("{member_id}", "1"), method=method, headers=other)
    assert response.status_code == 403 and "403" in operation["responses"]
