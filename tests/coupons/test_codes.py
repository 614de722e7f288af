"""Codes: unguessable, unambiguous, normalised; generated, shared, imported, exported."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.coupons.codes import ALPHABET, CodeFormat, normalise, random_strings
from loyalty.coupons.models import CouponCode
from loyalty.db import db
from loyalty.errors import InvalidInput
from tests.coupons import factories as f
from tests.factories import error_fields, idem


def test_the_alphabet_has_no_ambiguous_characters():
    assert len(ALPHABET) == 32 and not set("ILOU") & set(ALPHABET)
    sample = "".join(random_strings(2000, 12))
    assert set(sample) == set(ALPHABET)


def test_default_codes_carry_sixty_bits_and_fewer_are_refused():
    assert CodeFormat().entropy_bits == 60
    with pytest.raises(InvalidInput):
        CodeFormat(pattern="SPR-####-####")
    with pytest.raises(InvalidInput):
        CodeFormat(length=8)


def test_prefix_suffix_and_pattern_shape_the_code():
    [code] = CodeFormat(prefix="SPR", suffix="X", pattern="##-####-######").make(1)
    assert code.startswith("SPR") and code.endswith("X") and len(code) == 3 + 12 + 1
    assert set(code[3:-1]) <= set(ALPHABET)


@pytest.mark.parametrize("prefix", ["WS-", "spr", "A B"])
def test_a_prefix_is_kept_as_given_or_refused_never_silently_changed(prefix):
    with pytest.raises(InvalidInput) as refused:
        CodeFormat(prefix=prefix)
    assert [e["field"] for e in refused.value.extra["errors"]] == ["prefix"]


def test_normalising_upper_cases_and_drops_spaces_and_hyphens():
    assert normalise(" ab-cd  ef\t") == "ABCDEF"


@pytest.fixture
def admin(make):
    return make.api_key(scopes.COUPONS_ADMIN)


def test_a_batch_is_generated_and_exported_as_csv(client, admin):
    offer = f.offer()
    created = client.post(f"/v1/coupons/offers/{offer.id}/batches",
                          json={"count": 500, "prefix": "SP"}, headers=idem(admin))  # fmt: skip
    assert created.status_code == 201 and created.json["created_count"] == 500
    export = client.get(f"/v1/coupons/batches/{created.json['id']}/codes.csv", headers=admin)
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert len(rows) == 500 and len({r["code"] for r in rows}) == 500
    assert all(r["code"].startswith("SP") and r["uses"] == "0" for r in rows)


def test_a_shared_code_is_unique_and_keeps_its_own_limit(client, admin):
    offer = f.offer()
    url = f"/v1/coupons/offers/{offer.id}/shared-codes"
    created = client.post(url, json={"code": "spring-25", "max_uses": 100}, headers=idem(admin))
    assert created.status_code == 201
    assert (created.json["code"], created.json["max_uses"], created.json["kind"]) == (
        "SPRING25", 100, "shared",
    )  # fmt: skip
    again = client.post(url, json={"code": "SPRING25"}, headers=idem(admin))
    assert again.status_code == 409


def test_imported_codes_report_malformed_and_existing_ones(client, admin):
    offer = f.offer()
    f.shared(offer.id, "TAKEN123")
    response = client.post(
        f"/v1/coupons/offers/{offer.id}/imports",
        json={"codes": ["ext-0001-aaaa", "EXT0001AAAA", "taken123", "no!", "EXT-0002-BBBB"]},
        headers=idem(admin),
    )
    assert response.status_code == 201
    assert response.json["batch"]["created_count"] == 2
    assert response.json["invalid"] == ["no!"]
    assert response.json["duplicates"] == ["TAKEN123"]
    stored = db.session.scalars(
        sa.select(CouponCode.code).where(CouponCode.batch_id == response.json["batch"]["id"])
    ).all()
    assert sorted(stored) == ["EXT0001AAAA", "EXT0002BBBB"]


def test_an_offer_needs_the_field_its_kind_uses(client, admin):
    response = client.post("/v1/coupons/offers", json={"name": "x", "kind": "fixed_amount",
                           "currency": "EUR"}, headers=idem(admin))  # fmt: skip
    assert response.status_code == 422
    capped = {"name": "x", "kind": "percent", "percent": "12.5", "max_discount_minor": 500}
    response = client.post("/v1/coupons/offers", json=capped, headers=idem(admin))
    assert response.status_code == 422 and list(error_fields(response.json)) == ["currency"]
    response = client.post("/v1/coupons/offers", json={"name": "x", "kind": "percent",
                           "percent": "12.5"}, headers=idem(admin))  # fmt: skip
    assert response.status_code == 201 and response.json["terms"]["percent_bp"] == 1250
