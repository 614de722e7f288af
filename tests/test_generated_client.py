"""A client generated from /openapi.json by a tool nobody here wrote (openapi-python-client,
pinned in the dev extras) runs the main flows end to end: enrol, order, balance, validate
and redeem a coupon; and the three journeys of docs/guides (the marketer, the till, the
member app), found by operationId. If the document lies (a wrong schema, a missing parameter, an
undeclared status), the generated code fails to build, to send, or to parse the answer.

The client talks to the app in-process through httpx's WSGI transport: the real HTTP
edge, without a port.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from loyalty.auth import scopes
from tests.earning.factories import base_rate

PACKAGE = "omniloyal_generated_client"


@pytest.fixture(scope="module")
def generated(app, tmp_path_factory) -> Any:
    """The client package, generated once for this module from the app's own document."""
    tool = Path(sys.executable).parent / "openapi-python-client"
    if not tool.exists():
        pytest.fail("openapi-python-client is missing: pip install -e '.[dev]'")
    work = tmp_path_factory.mktemp("client")
    document = work / "openapi.json"
    document.write_text(json.dumps(app.test_client().get("/openapi.json").json))
    command = [str(tool), "generate", "--path", str(document), "--meta", "none"]
    result = subprocess.run(
        [*command, "--output-path", str(work / PACKAGE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
        env={"PATH": f"{tool.parent}:/usr/bin:/bin"},  # its ruff post-hook: ours
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout, result.stdout  # every part of the document used
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
            del sys.modules[name]
        shutil.rmtree(work, ignore_errors=True)


def _client(generated: Any, app, headers: dict[str, str]) -> Any:
    token = headers["Authorization"].removeprefix("Bearer ")
    return generated.AuthenticatedClient(
        base_url="http://omniloyal.test",
        token=token,
        raise_on_unexpected_status=True,  # a status the document doesn't declare fails
        httpx_args={"transport": httpx.WSGITransport(app=app)},
    )


def _api(generated: Any, module: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.{module}")


def _model(generated: Any, name: str, data: dict[str, Any]) -> Any:
    module = importlib.import_module(f"{PACKAGE}.models")
    return getattr(module, name).from_dict(data)


def _key() -> str:
    return uuid.uuid4().hex


def test_the_generated_client_enrols_orders_reads_the_balance_validates_and_redeems(
    app, make, generated
):
    base_rate()  # 1 point per euro
    admin = _client(generated, app, make.api_key(scopes.COUPONS_ADMIN))
    pos = _client(generated, app, make.api_key(*scopes.POS))

    enrolled = _api(generated, "members.enrol").sync_detailed(
        client=pos,
        body=_model(generated, "EnrolRequest", {"identities": {"email": "ada@example.com"}}),
        idempotency_key=_key(),
    )
    assert enrolled.status_code == 201
    member_id = enrolled.parsed.member.id

    line = {"sku": "SHOE-1", "category": "shoes", "quantity": 1, "unit_price_minor": 8_000}
    order_body = {
        "order_id": "WEB-1",
        "channel": "online",
        "currency": "EUR",
        "member": {"member_id": member_id},
        "lines": [line],
    }
    order = _api(generated, "earning.post_order").sync_detailed(
        client=pos, body=_model(generated, "OrderRequest", order_body), idempotency_key=_key()
    )
    assert order.status_code == 201 and order.parsed.points_earned == 80
    again = _api(generated, "earning.post_order").sync_detailed(
        client=pos, body=_model(generated, "OrderRequest", order_body), idempotency_key=_key()
    )
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"

    balance = _api(generated, "points.member_balance").sync(client=pos, member_id=member_id)
    assert (balance.balance, balance.available) == (80, 80)

    offer = _api(generated, "coupons.create_offer").sync(
        client=admin,
        body=_model(
            generated,
            "OfferCreate",
            {"name": "10 % off", "kind": "percent", "percent_bp": 1000, "currency": "EUR"},
        ),
        idempotency_key=_key(),
    )
    _api(generated, "coupons.create_shared_code").sync(
        client=admin,
        offer_id=offer.id,
        body=_model(generated, "SharedCodeCreate", {"code": "SPRING10"}),
        idempotency_key=_key(),
    )
    basket = {
        "codes": ["SPRING10"],
        "channel": "online",
        "currency": "EUR",
        "member_id": member_id,
        "lines": [line],
    }
    checked = _api(generated, "coupons.validate_codes").sync(
        client=pos, body=_model(generated, "Validate", basket)
    )
    assert checked.total_discount_minor == 800
    assert [result.applies for result in checked.results] == [True]

    redeemed = _api(generated, "coupons.redeem").sync_detailed(
        client=pos,
        body=_model(generated, "Redeem", {**basket, "order_ref": "WEB-2"}),
        idempotency_key=_key(),
    )
    assert redeemed.status_code == 201
    assert redeemed.parsed.total_discount_minor == 800
    assert [r.code for r in redeemed.parsed.redemptions] == ["SPRING10"]


def test_the_generated_client_reads_problems_as_the_documented_problem_model(app, make, generated):
    pos = _client(generated, app, make.api_key(*scopes.POS))
    missing = _api(generated, "points.member_balance").sync_detailed(client=pos, member_id=999)
    assert missing.status_code == 404
    assert missing.parsed.type_ == "/problems/not-found"
    no_key = _api(generated, "members.enrol").sync_detailed(
        client=pos,
        body=_model(generated, "EnrolRequest", {"identities": {"email": "x@example.com"}}),
        idempotency_key="",  # sent empty: refused like no key at all is by the 428
    )
    assert no_key.status_code in (422, 428)
    assert no_key.parsed.type_.startswith("/problems/")


# --- the three journeys of docs/guides, through the generated client only ------------------


def _call(generated: Any, operation_id: str) -> Any:
    """The generated module of an operation, found by its operationId whatever its tag."""
    api = importlib.import_module(f"{PACKAGE}.api")
    for tag in pkgutil.iter_modules(api.__path__):
        try:
            return importlib.import_module(f"{PACKAGE}.api.{tag.name}.{operation_id}")
        except ModuleNotFoundError:
            continue
    raise AssertionError(f"the document declares no operation {operation_id}")


def _ok(response: Any, status: int) -> Any:
    assert response.status_code == status, (response.status_code, response.content)
    return response.parsed


def test_the_marketer_journey_through_the_generated_client(app, make, generated):
    """Rules, a tier, a store, an offer issued to a member, its stats and the reports."""
    admin = _client(generated, app, make.api_key(scopes.ADMIN))
    marketer = _client(generated, app, make.api_key(scopes.COUPONS_ADMIN))
    finance = _client(generated, app, make.api_key(scopes.FINANCE_READ))
    pos = _client(generated, app, make.api_key(*scopes.POS))
    rule = {
        "name": "1 per euro",
        "kind": "base_rate",
        "currency": "EUR",
        "points": 1,
        "per_minor": 100,
    }
    _ok(
        _call(generated, "create_rule").sync_detailed(
            client=admin, body=_model(generated, "RuleCreate", rule), idempotency_key=_key()
        ),
        201,
    )
    tier = {"code": "silver", "name": "Silver", "rank": 1, "threshold": 50}
    _ok(
        _call(generated, "create_tier").sync_detailed(
            client=admin, body=_model(generated, "TierCreate", tier), idempotency_key=_key()
        ),
        201,
    )
    store = {"id": "PAR-01", "name": "Paris", "timezone": "Europe/Paris", "country": "FR"}
    _ok(
        _call(generated, "create_store").sync_detailed(
            client=admin, body=_model(generated, "StoreCreate", store), idempotency_key=_key()
        ),
        201,
    )
    order = {
        "order_id": "WEB-7",
        "channel": "online",
        "currency": "EUR",
        "member": {"email": "grace@example.com"},
        "lines": [{"sku": "SHOE", "category": "shoes", "quantity": 1, "unit_price_minor": 9_000}],
    }
    posted = _ok(
        _call(generated, "post_order").sync_detailed(
            client=pos, body=_model(generated, "OrderRequest", order), idempotency_key=_key()
        ),
        201,
    )
    member_id = posted.member_id
    offer = _ok(
        _call(generated, "create_offer").sync_detailed(
            client=marketer,
            body=_model(
                generated,
                "OfferCreate",
                {
                    "name": "5 EUR off",
                    "kind": "fixed_amount",
                    "amount_minor": 500,
                    "currency": "EUR",
                },
            ),
            idempotency_key=_key(),
        ),
        201,
    )
    _ok(
        _call(generated, "issue").sync_detailed(
            client=marketer,
            offer_id=offer.id,
            body=_model(generated, "Issue", {"member_ids": [member_id]}),
            idempotency_key=_key(),
        ),
        201,
    )
    stats = _ok(
        _call(generated, "offer_stats").sync_detailed(client=marketer, offer_id=offer.id), 200
    )
    assert stats.codes == 1  # the member's own code, in their wallet
    liability = _ok(_call(generated, "liability_report").sync_detailed(client=finance), 200)
    assert liability.outstanding == 90
    activity = _ok(_call(generated, "activity_report").sync_detailed(client=finance), 200)
    assert len(activity.days) == 30 and activity.days[-1].issued == 90


def test_the_pos_journey_through_the_generated_client(app, make, generated):
    """Identify by phone, validate a coupon, hold points, post the order with the coupon,
    capture the points for it, refund a line."""
    base_rate()
    make.store("PAR-01", timezone="Europe/Paris")
    member = make.member(phone="+33612345678", points=1_000)
    admin = _client(generated, app, make.api_key(scopes.COUPONS_ADMIN))
    till = _client(generated, app, make.api_key(*scopes.POS, store_id="PAR-01"))
    offer = _call(generated, "create_offer").sync(
        client=admin,
        body=_model(
            generated,
            "OfferCreate",
            {"name": "10 % off", "kind": "percent", "percent_bp": 1000, "currency": "EUR"},
        ),
        idempotency_key=_key(),
    )
    _call(generated, "create_shared_code").sync(
        client=admin,
        offer_id=offer.id,
        body=_model(generated, "SharedCodeCreate", {"code": "TILL10"}),
        idempotency_key=_key(),
    )

    found = _ok(
        _call(generated, "identify").sync_detailed(
            client=till,
            body=_model(
                generated, "IdentifyRequest", {"phone": "06 12 34 56 78", "default_region": "FR"}
            ),
        ),
        200,
    )
    assert found.member.id == member.id and found.balance.available == 1_000
    lines = [
        {"sku": "SHOE", "category": "shoes", "quantity": 1, "unit_price_minor": 8_000},
        {"sku": "SOCKS", "category": "socks", "quantity": 2, "unit_price_minor": 1_000},
    ]
    basket = {"codes": ["TILL10"], "channel": "store", "currency": "EUR", "lines": lines}
    checked = _ok(
        _call(generated, "validate_codes").sync_detailed(
            client=till, body=_model(generated, "Validate", {**basket, "member_id": member.id})
        ),
        200,
    )
    assert checked.total_discount_minor == 1_000
    hold = _ok(
        _call(generated, "create_hold").sync_detailed(
            client=till,
            member_id=member.id,
            body=_model(generated, "HoldRequest", {"points": 300, "reference": "till 3"}),
            idempotency_key=_key(),
        ),
        201,
    )
    order = {
        "order_id": "PAR01-1",
        "channel": "store",
        "currency": "EUR",
        "member": {"member_id": member.id},
        "lines": lines,
        "coupon_codes": ["TILL10"],
    }
    posted = _ok(
        _call(generated, "post_order").sync_detailed(
            client=till, body=_model(generated, "OrderRequest", order), idempotency_key=_key()
        ),
        201,
    )
    assert posted.discount_minor == 1_000 and posted.points_earned == 90
    captured = _ok(
        _call(generated, "capture_hold").sync_detailed(
            client=till,
            hold_id=hold.id,
            body=_model(generated, "CaptureRequest", {"order_id": "PAR01-1"}),
            idempotency_key=_key(),
        ),
        200,
    )
    assert captured.captured == 300 and captured.order_id == "PAR01-1"
    refund = _ok(
        _call(generated, "refund_order").sync_detailed(
            client=till,
            order_id="PAR01-1",
            body=_model(
                generated,
                "RefundRequest",
                {"refund_id": "R1", "lines": [{"index": 1, "quantity": 2}]},
            ),
            idempotency_key=_key(),
        ),
        201,
    )
    assert refund.order_status == "partially_refunded" and refund.points_returned > 0
    after = _ok(
        _call(generated, "member_balance").sync_detailed(client=till, member_id=member.id), 200
    )
    assert after.balance == 1_000 + 90 - 300 - refund.points_reversed + refund.points_returned


def test_the_member_app_journey_through_the_generated_client(app, make, generated):
    """The backend mints a member token; the app reads the member, balance, history and
    wallet, checks a coupon, shows its QR code, sets a preference, registers push."""
    base_rate()
    member = make.member(points=400)
    admin = _client(generated, app, make.api_key(scopes.COUPONS_ADMIN))
    backend = _client(generated, app, make.api_key(scopes.MEMBER_TOKENS))
    offer = _call(generated, "create_offer").sync(
        client=admin,
        body=_model(
            generated,
            "OfferCreate",
            {"name": "5 off", "kind": "fixed_amount", "amount_minor": 500, "currency": "EUR"},
        ),
        idempotency_key=_key(),
    )
    _call(generated, "issue").sync(
        client=admin,
        offer_id=offer.id,
        body=_model(generated, "Issue", {"member_ids": [member.id]}),
        idempotency_key=_key(),
    )
    minted = _ok(
        _call(generated, "issue_member_token").sync_detailed(
            client=backend,
            body=_model(generated, "MemberTokenRequest", {"member_id": member.id}),
        ),
        201,
    )
    app_client = _client(generated, app, {"Authorization": f"Bearer {minted.token}"})

    me = _ok(_call(generated, "me").sync_detailed(client=app_client), 200)
    assert me.member_id == member.id
    balance = _ok(_call(generated, "my_balance").sync_detailed(client=app_client), 200)
    assert balance.available == 400
    history = _ok(_call(generated, "my_history").sync_detailed(client=app_client, limit=5), 200)
    assert [entry.points for entry in history.items] == [400]
    wallet = _ok(_call(generated, "my_coupons").sync_detailed(client=app_client), 200)
    [coupon] = wallet.items
    line = {"sku": "TEE", "category": "apparel", "quantity": 1, "unit_price_minor": 2_000}
    checked = _ok(
        _call(generated, "my_validate").sync_detailed(
            client=app_client,
            body=_model(
                generated,
                "MemberValidate",
                {"codes": [coupon.code], "channel": "app", "currency": "EUR", "lines": [line]},
            ),
        ),
        200,
    )
    assert checked.total_discount_minor == 500
    qr = _ok(_call(generated, "my_qr").sync_detailed(client=app_client), 201)
    assert qr.token
    preferences = _ok(
        _call(generated, "set_my_preferences").sync_detailed(
            client=app_client,
            body=_model(
                generated,
                "MemberPreferencesUpdate",
                {"preferences": [{"channel": "push", "purpose": "marketing", "granted": True}]},
            ),
            idempotency_key=_key(),
        ),
        200,
    )
    assert any(
        p.channel == "push" and p.purpose == "marketing" and p.granted
        for p in preferences.preferences
    )
    browser = {
        "endpoint": "https://fcm.googleapis.com/fcm/send/journey",
        "expirationTime": None,
        "keys": {"p256dh": P256DH, "auth": "tBHItJI5svbpez7KI4CCXg"},
    }
    _ok(
        _call(generated, "register_my_subscription").sync_detailed(
            client=app_client,
            body=_model(generated, "PushSubscriptionCreate", browser),
            idempotency_key=_key(),
        ),
        201,
    )
    listed = _ok(_call(generated, "my_subscriptions").sync_detailed(client=app_client), 200)
    assert [s.endpoint for s in listed.items] == [browser["endpoint"]]


P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
