"""CSV import of an existing member base: fast, idempotent, resumable, with a row report."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import InvalidInput
from loyalty.ledger import operations as ledger
from loyalty.ledger import queries
from loyalty.ledger.models import (
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PointLot,
    ProgramAccount,
)
from loyalty.members import importer
from loyalty.members.importer import ChunkResult, import_members
from loyalty.members.models import Member, MemberIdentity, MemberImport
from loyalty.members.operations import find_member_by_identity
from loyalty.outbox import OutboxEvent
from tests.ledger.invariants import assert_ledger_consistent
from tests.members.factories import csv_text, make_tier


def rows(n: int, start: int = 1, **extra: str) -> list[dict[str, str]]:
    return [
        {
            "external_id": f"C{i:05d}",
            "phone": f"+3361234{i:04d}",
            "email": f"m{i}@shop.example",
            "name": f"Member {i}",
            "opening_points": str(i * 10),
            **extra,
        }
        for i in range(start, start + n)
    ]


def run(text: str, *, batch: str = "legacy", chunk_size: int = 3, **kwargs):
    results: list[ChunkResult] = []

    def commit(result: ChunkResult) -> None:
        db.session.commit()
        results.append(result)

    stats = import_members(
        io.StringIO(text),
        batch=batch,
        now=utcnow(),
        actor="import:test",
        chunk_size=chunk_size,
        after_chunk=commit,
        **kwargs,
    )
    return stats, [error for result in results for error in result.errors]


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_imported_members_have_identities_profile_tier_and_real_opening_balances(make):
    make.store("PAR-01")
    make_tier("gold", 2)
    data = rows(7, tier="", home_store_id="")
    data[0].update(
        tier="gold",
        home_store_id="PAR-01",
        birthday="1980-04-05",
        locale="fr-FR",
        timezone="Europe/Paris",
        region="north",
        card="card-0001",
        app_user="u-1",
        opening_points_expire_at="2031-06-30",
    )
    data[1]["opening_points"] = ""
    stats, errors = run(csv_text(data))
    assert errors == []
    assert (stats.rows, stats.imported, stats.skipped, stats.chunks) == (7, 7, 0, 3)
    assert stats.points == sum(i * 10 for i in range(1, 8)) - 20

    first = find_member_by_identity("card", "CARD0001")
    assert first is not None and first.name == "Member 1" and first.tier_code == "gold"
    assert (first.home_store_id, first.locale, first.timezone) == (
        "PAR-01",
        "fr-FR",
        "Europe/Paris",
    )
    assert find_member_by_identity("phone", "+33612340001").id == first.id
    lot = db.session.scalars(sa.select(PointLot).where(PointLot.member_id == first.id)).one()
    assert lot.expires_at == datetime(2031, 7, 1, tzinfo=UTC)  # the end of the given day
    assert ledger.member_balance(first.id).available == 10

    opening = ledger.program_account_id(ProgramAccount.OPENING)
    transactions = db.session.scalars(sa.select(LedgerTransaction)).all()
    assert {(tx.kind, tx.cause_type, tx.cause_ref) for tx in transactions} == {
        ("opening", "import", "legacy")
    }
    assert len(transactions) == 6  # none for the member without opening points
    assert {entry.from_account_id for entry in db.session.scalars(sa.select(LedgerEntry))} == {
        opening
    }
    member_accounts = sa.select(sa.func.count()).where(LedgerAccount.member_id.is_not(None))
    assert db.session.scalar(member_accounts) == 7 * 3
    assert queries.liability(utcnow())["outstanding"] == stats.points
    assert_ledger_consistent()
    event_counts = [
        e.payload["count"]
        for e in db.session.scalars(sa.select(OutboxEvent).order_by(OutboxEvent.id))
    ]
    assert event_counts == [3, 3, 1]


def test_lots_without_an_expiry_column_follow_the_configured_policy(make, app):
    now = utcnow()
    run(csv_text(rows(1)))
    lot = db.session.scalars(sa.select(PointLot)).one()
    expected = app.extensions["omniloyal.settings"].points_expiry.expires_at(now)
    assert abs((lot.expires_at - expected).total_seconds()) < 60


def test_running_the_same_file_again_changes_nothing(make):
    text = csv_text(rows(8))
    run(text)
    snapshot = [count(m) for m in (Member, MemberIdentity, LedgerEntry, PointLot, MemberImport)]
    stats, errors = run(text)
    assert (stats.imported, stats.skipped, errors) == (0, 8, [])
    assert [count(m) for m in (Member, MemberIdentity, LedgerEntry, PointLot, MemberImport)] == (
        snapshot
    )
    assert_ledger_consistent()


def test_an_interrupted_import_resumes_where_it_stopped(make):
    text = csv_text(rows(10))
    chunks_done = []

    def crash_on_third_chunk(result: ChunkResult) -> None:
        if len(chunks_done) == 2:
            raise KeyboardInterrupt  # the process dies before committing chunk 3
        db.session.commit()
        chunks_done.append(result)

    with pytest.raises(KeyboardInterrupt):
        import_members(
            io.StringIO(text),
            batch="legacy",
            now=utcnow(),
            actor="t",
            chunk_size=3,
            after_chunk=crash_on_third_chunk,
        )
    db.session.rollback()
    assert count(Member) == 6
    stats, errors = run(text)
    assert (stats.imported, stats.skipped, errors) == (4, 6, [])
    assert count(Member) == count(MemberImport) == 10
    assert queries.liability(utcnow())["outstanding"] == sum(i * 10 for i in range(1, 11))
    assert_ledger_consistent()


def test_invalid_rows_are_reported_by_row_and_column_and_the_rest_is_imported(make):
    make.member(email="taken@shop.example")
    good = rows(2)
    bad = [
        {"external_id": "", "email": "x1@shop.example"},
        {"external_id": "B1", "phone": "+33 1"},
        {"external_id": "B2", "email": "nope"},
        {"external_id": "B3", "email": "b3@shop.example", "tier": "platinum"},
        {"external_id": "B4", "email": "b4@shop.example", "home_store_id": "NOPE"},
        {"external_id": "B5", "email": "b5@shop.example", "birthday": "31/12/1980"},
        {"external_id": "B6", "email": "b6@shop.example", "opening_points": "-5"},
        {"external_id": "B7", "email": "b7@shop.example", "name": "bell\x07"},
        {"external_id": "B8", "email": "b8@shop.example", "timezone": "Mars/Olympus"},
        {
            "external_id": "B9",
            "email": "b9@shop.example",
            "opening_points": "5",
            "opening_points_expire_at": "2001-01-01",
        },
        {"external_id": "B10", "email": "TAKEN@shop.example"},
        {"external_id": "B11"},
        {"external_id": "C00001", "email": "again@shop.example"},  # duplicate external id
        {"external_id": "B12", "email": "m2@shop.example"},  # same email as row 3
    ]
    text = csv_text(
        good + bad,
        columns=list(importer.COLUMNS),
    )
    text += "B13,,b13@shop.example" + "," * (len(importer.COLUMNS) - 2) + "unexpected\n"
    stats, errors = run(text, chunk_size=4)
    assert stats.imported == 2 and stats.errors == len(errors)
    reported = {(e.row, e.column) for e in errors}
    assert reported == {
        (4, "external_id"),
        (5, "phone"),
        (6, "email"),
        (7, "tier"),
        (8, "home_store_id"),
        (9, "birthday"),
        (10, "opening_points"),
        (11, "name"),
        (12, "timezone"),
        (13, "opening_points_expire_at"),
        (14, "email"),
        (15, "phone"),
        (16, "external_id"),
        (17, "email"),
        (18, ""),
    }
    assert all(e.message for e in errors)
    assert count(Member) == 3
    assert_ledger_consistent()


def test_marketing_consent_from_the_old_system_comes_with_its_source_place_and_time(make):
    from notifications import consent
    from notifications.consent import Purpose
    from notifications.providers.base import Channel

    text = csv_text(
        [
            {"external_id": "K1", "phone": "+33612340001", "sms_marketing": "yes",
             "email_marketing": "No", "marketing_consent_at": "2024-03-01"},
            {"external_id": "K2", "email": "k2@shop.example", "email_marketing": "YES"},
            {"external_id": "K3", "email": "k3@shop.example"},
        ],
        columns=["external_id", "phone", "email", *importer.CONSENT_COLUMNS,
                 "marketing_consent_at"],
    )  # fmt: skip
    before = utcnow()

    stats, errors = run(text, batch="crm-2024")

    assert (stats.imported, errors) == (3, [])
    k1, k2, k3 = (find_member_by_identity(*i) for i in
                  [("phone", "+33612340001"), ("email", "k2@shop.example"),
                   ("email", "k3@shop.example")])  # fmt: skip

    def marketing(member) -> tuple[bool, bool, bool]:  # type: ignore[no-untyped-def]
        return tuple(consent.allows(member.id, c, Purpose.MARKETING) for c in Channel)  # type: ignore[return-value]

    assert marketing(k1) == (True, False, False)
    assert marketing(k2) == (False, True, False)
    assert marketing(k3) == (False, False, False)  # nothing known: marketing stays off
    assert consent.allows(k1.id, Channel.EMAIL, Purpose.TRANSACTIONAL)
    history = [
        (c.channel, c.granted, c.source, c.actor, c.place, c.at) for c in consent.history(k1.id)
    ]
    given = datetime(2024, 3, 1, tzinfo=UTC)
    assert history == [
        ("sms", True, "import", "import:test", "import crm-2024", given),
        ("email", False, "import", "import:test", "import crm-2024", given),
    ]
    [k2_change] = consent.history(k2.id)
    assert k2_change.at >= before  # no time in the file: the import's
    assert consent.history(k3.id) == []


def test_consent_columns_that_say_something_else_are_reported(make):
    text = csv_text(
        [
            {"external_id": "Q1", "email": "q1@shop.example", "sms_marketing": "maybe"},
            {"external_id": "Q2", "email": "q2@shop.example", "email_marketing": "yes",
             "marketing_consent_at": "2999-01-01"},
            {"external_id": "Q3", "email": "q3@shop.example",
             "marketing_consent_at": "2024-01-01"},
            {"external_id": "Q4", "email": "q4@shop.example", "push_marketing": "no",
             "marketing_consent_at": "March 2024"},
        ],
        columns=["external_id", "email", *importer.CONSENT_COLUMNS, "marketing_consent_at"],
    )  # fmt: skip

    stats, errors = run(text)

    assert stats.imported == 0
    assert {(e.row, e.column) for e in errors} == {
        (2, "sms_marketing"),
        (3, "marketing_consent_at"),
        (4, "marketing_consent_at"),
        (5, "marketing_consent_at"),
    }


def test_the_same_identity_twice_in_one_chunk_imports_the_first_row_only(make):
    data = rows(2)
    data[1]["phone"] = data[0]["phone"]
    stats, errors = run(csv_text(data), chunk_size=10)
    assert stats.imported == 1
    assert [(e.row, e.column) for e in errors] == [(3, "phone")]


def test_a_file_with_an_unknown_or_missing_column_is_refused_before_any_write(make):
    for header in ("external_id,phone,favourite_colour\n", "phone,email\n", ""):
        with pytest.raises(InvalidInput):
            run(header + "1,+33612345678,blue\n")
    assert count(Member) == 0


def test_phone_numbers_without_country_code_use_the_default_region(make):
    _, errors = run(
        csv_text([{"external_id": "1", "phone": "06 12 34 56 78"}]), default_region="FR"
    )
    assert errors == [] and find_member_by_identity("phone", "+33612345678") is not None


def test_the_cli_imports_a_file_and_writes_the_error_report(app, make, tmp_path):
    source = tmp_path / "base.csv"
    source.write_text(
        csv_text([*rows(5), {"external_id": "X", "email": "broken"}]), encoding="utf-8"
    )
    report = tmp_path / "errors.csv"
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["members", "import", str(source), "--report", str(report), "--chunk", "2"]
    )
    assert result.exit_code == 1, result.output  # a rejected row
    assert "5 imported" in result.output and "rows/s" in result.output
    with open(report, newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["row", "column", "message", "external_id"]
    assert [line[:2] for line in lines[1:]] == [["7", "email"]]
    again = runner.invoke(args=["members", "import", str(source), "--batch", "base"])
    assert "0 imported, 5 already imported" in again.output
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\n1,2\n")
    refused = runner.invoke(args=["members", "import", str(bad)])
    assert refused.exit_code != 0 and "header" in refused.output


def test_the_error_report_neutralises_cells_a_spreadsheet_would_run_as_formulas(app, tmp_path):
    """OWASP CSV injection: a value from the uploaded file starting with = + - @ (or a tab
    or carriage return) is written with a leading apostrophe, so it opens as text."""
    formulas = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)"]
    source = tmp_path / "hostile.csv"
    source.write_text(
        csv_text([{"external_id": value, "email": "not-an-email"} for value in formulas]),
        encoding="utf-8",
    )
    report = tmp_path / "errors.csv"
    result = app.test_cli_runner().invoke(
        args=["members", "import", str(source), "--report", str(report)]
    )
    assert result.exit_code == 1, result.output  # every row rejected
    with open(report, newline="") as handle:
        lines = list(csv.reader(handle))[1:]
    assert [line[3] for line in lines] == ["'" + value for value in formulas]
    assert all(not cell.startswith(("=", "+", "-", "@")) for line in lines for cell in line)
    assert [line[0] for line in lines] == ["2", "3", "4", "5"]  # row numbers stay numbers


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@A1", "\t=1", "\r=1"])
def test_report_cells_starting_like_a_formula_become_text(value):
    assert importer.report_cell(value) == "'" + value
    assert importer.report_cell("C00001") == "C00001" and importer.report_cell(7) == 7


def test_the_files_external_id_becomes_the_members_and_another_batch_cant_reuse_it(client, make):
    _stats, errors = run(csv_text(rows(3)))
    assert errors == []
    member = db.session.scalar(sa.select(Member).where(Member.external_id == "C00002"))
    assert member is not None
    admin = make.api_key()
    balance = client.get("/v1/members/ext:C00002/balance", headers=admin)
    assert balance.status_code == 200 and balance.json["member_id"] == member.id
    again = rows(1, start=2, phone="+33699999999", email="other@shop.example")
    _stats, errors = run(csv_text(again), batch="second")
    assert [(e.column, e.message) for e in errors] == [
        ("external_id", "this external_id already belongs to a member")
    ]
