"""A client generated from /openapi.json by a tool nobody here wrote (openapi-python-client,
pinned in the dev extras) runs the main flows end to end: enrol, order, balance, validate
and redeem a coupon. If the document lies (a wrong schema, a missing parameter, an
undeclared status), the generated code fails to build, to send, or to parse the answer.

The client talks to the app in-process through httpx's WSGI transport: the real HTTP
edge, without a port.
"""

from __future__ import annotations

import importlib
import json
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
