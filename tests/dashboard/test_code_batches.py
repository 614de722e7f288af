"""Generating codes from the offer page: a background job (the real queue), its progress on
the page until it is done, then the CSV; a form sent twice makes one batch."""

from __future__ import annotations

import re

import sqlalchemy as sa

from loyalty.coupons.models import CouponBatch
from loyalty.dashboard.models import AuditEntry
from loyalty.db import db
from loyalty.queue import get_queue, make_worker
from tests.dashboard.conftest import post_form

KEY = re.compile(r'name="request_key" value="([0-9a-f]{32})"')


def _offer(client) -> str:
    created = post_form(client, "/dashboard/offers",
                        {"name": "5 off", "kind": "fixed_amount", "amount_minor": "500",
                         "currency": "EUR"})  # fmt: skip
    return created.headers["Location"]


def test_a_batch_runs_in_the_background_with_its_progress_then_exports(app, signed_in):
    client = signed_in("marketer")
    offer_url = _offer(client)
    key = KEY.search(client.get(offer_url).get_data(as_text=True)).group(1)
    form = {"action": "batch", "count": "1200", "prefix": "BG", "request_key": key}

    first = post_form(client, offer_url, form)
    again = post_form(client, offer_url, form)  # the double submit

    assert first.status_code == again.status_code == 302
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CouponBatch)) == 1
    assert get_queue("default").count == 1  # one job
    audited = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "offers.codes.generate")
    ).all()
    assert len(audited) == 1 and audited[0].after["requested"] == 1200
    batch_id = db.session.scalar(sa.select(CouponBatch.id))
    db.session.rollback()

    running = client.get(offer_url).get_data(as_text=True)
    assert "This batch was already started." in running
    assert "0/1200" in running and f'data-batch="{batch_id}"' in running
    assert 'http-equiv="refresh"' in running  # without JavaScript: the page reloads itself
    progress_url = re.search(r'data-progress-url="([^"]+)"', running).group(1)
    assert client.get(progress_url.replace("&amp;", "&")).json == {
        str(batch_id): {"status": "running", "requested": 1200, "generated": 0, "error": None}
    }
    early = client.get(f"/dashboard/offers/batches/{batch_id}.csv")
    assert early.status_code == 302  # not until it is done

    db.session.remove()  # the test's requests share this session: end its read first
    make_worker(app, ("default",)).work(burst=True)

    done = client.get(offer_url).get_data(as_text=True)
    assert "1200/1200" in done and 'http-equiv="refresh"' not in done
    assert client.get(progress_url.replace("&amp;", "&")).json[str(batch_id)]["status"] == "done"
    csv_text = client.get(f"/dashboard/offers/batches/{batch_id}.csv").get_data(as_text=True)
    assert csv_text.count("\n") == 1201 and csv_text.splitlines()[1].startswith("BG")


def test_a_batch_needs_the_form_key_and_the_offers_role(app, signed_in):
    marketer = signed_in("marketer")
    offer_url = _offer(marketer)
    no_key = post_form(marketer, offer_url, {"action": "batch", "count": "5"})
    assert "The form expired" in marketer.get(no_key.headers["Location"]).get_data(as_text=True)
    post_form(marketer, "/dashboard/logout", {})
    support = signed_in("support")
    refused = post_form(support, offer_url, {"action": "batch", "count": "5",
                                             "request_key": "a" * 32})  # fmt: skip
    assert refused.status_code == 403
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CouponBatch)) == 0
    assert get_queue("default").count == 0
