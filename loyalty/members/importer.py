"""Bulk import of a retailer's existing member base from CSV, with opening balances and tiers.

- Idempotent and resumable: each imported row is recorded in `member_imports` under a unique
  (batch, external_id) in the same transaction as the member it created, so re-running a
  file (or resuming after a crash) skips what was already committed. The caller commits
  after every chunk (`after_chunk`); an interrupted run loses at most the chunk in flight.
- Per-row errors (row number, column, message) are collected and the import goes on; the
  row number is the spreadsheet's: the header is row 1, the first member row 2.
- Fast: a chunk is validated in Python, checked against the database with a few IN queries,
  then written with one multi-row INSERT per table (members, identities, the three ledger
  accounts per member, opening transactions, lots, entries, import records).
- Opening balances are real ledger data: one 'opening' transaction per member with points,
  one entry from the program's OPENING account to the member's points account and one
  available lot, so balance = sum of entries = sum of lot remainders holds exactly.
- Tier qualification: `qualifying_points` (default: the opening points) count toward the
  member's tiers as if earned on the import day (`member_imports.qualifying_points`), so an
  imported Gold member with the points Gold needs keeps Gold for the tier's window. Give
  the column (0 if need be) when the old balance says nothing about qualification.
- Marketing consent carried over: `sms_marketing`, `email_marketing`, `push_marketing`
  (yes / no; empty: nothing known, so marketing stays off on that channel, it is opt-in)
  and `marketing_consent_at` (when the member gave or withdrew it in the old system;
  default the import's time) become the member's consents and their history, with
  source `import`, the importing actor and `import <batch>` as the place.
- One `members.imported` outbox event per chunk (not member.enrolled: an imported member is
  not a new sign-up, and must not trigger sign-up bonuses or welcome messages).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import IO, Any

import sqlalchemy as sa
from flask import current_app

from loyalty import outbox
from loyalty.db import db
from loyalty.errors import InvalidInput
from loyalty.ledger.models import (
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    LotStatus,
    PointLot,
    ProgramAccount,
    TransactionKind,
)
from loyalty.ledger.operations import program_account_id
from loyalty.members.identities import normalise
from loyalty.members.models import IdentityKind, Member, MemberIdentity, MemberImport, MemberStatus
from loyalty.schemas import MAX_POINTS
from loyalty.stores.models import Store
from loyalty.tiers.models import Tier
from loyalty.timezones import validate_timezone

COLUMNS = (
    "external_id",
    "phone",
    "email",
    "card",
    "app_user",
    "name",
    "birthday",
    "locale",
    "timezone",
    "region",
    "home_store_id",
    "opening_points",
    "opening_points_expire_at",
    "qualifying_points",
    "tier",
    "sms_marketing",
    "email_marketing",
    "push_marketing",
    "marketing_consent_at",
)
CONSENT_COLUMNS = {"sms_marketing": "sms", "email_marketing": "email", "push_marketing": "push"}
_YES, _NO = frozenset({"yes", "y", "true", "1"}), frozenset({"no", "n", "false", "0"})
IDENTITY_COLUMNS = tuple(kind.value for kind in IdentityKind)
_LOCALE = re.compile(r"^[a-zA-Z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CAUSE_TYPE = "import"


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    message: str
    external_id: str | None = None


@dataclass
class ChunkResult:
    imported: int = 0
    skipped: int = 0  # already imported by an earlier run of this batch
    points: int = 0
    errors: list[RowError] = field(default_factory=list)
    last_row: int = 0


@dataclass
class ImportStats:
    rows: int = 0
    imported: int = 0
    skipped: int = 0
    points: int = 0
    errors: int = 0
    chunks: int = 0

    def add(self, chunk: ChunkResult, rows: int) -> None:
        self.rows += rows
        self.imported += chunk.imported
        self.skipped += chunk.skipped
        self.points += chunk.points
        self.errors += len(chunk.errors)
        self.chunks += 1


@dataclass
class _Row:
    number: int
    external_id: str
    identities: dict[str, str]
    member: dict[str, Any]
    points: int
    expires_at: datetime | None
    qualifying_points: int = 0
    consents: dict[str, bool] = field(default_factory=dict)  # channel -> marketing granted
    consent_at: datetime | None = None


REPORT_HEADER = ("row", "column", "message", "external_id")
# Cells a spreadsheet would read as a formula (OWASP "CSV Injection"): =, +, -, @ start
# formulas; a leading tab or carriage return can hide one from the eye and some parsers.
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def report_cell(value: Any) -> Any:
    """A value for the error report, safe to open in a spreadsheet.

    The report repeats what the uploaded file said (external ids, and messages quoting
    values), so a cell like `=HYPERLINK(...)` would run when support opens it. Text that
    starts like a formula gets a leading apostrophe, which spreadsheets show as text.
    Numbers stay numbers.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_TRIGGERS):
        return "'" + value
    return value


def write_error_report(writer: Any, errors: Iterable[RowError]) -> None:
    """Append `errors` to a csv.writer as (row, column, message, external_id) rows."""
    writer.writerows(
        [report_cell(cell) for cell in (e.row, e.column, e.message, e.external_id or "")]
        for e in errors
    )


class _RowInvalid(Exception):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column, self.message = column, message


def read_rows(stream: IO[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, raw row) for every data row; a bad header fails the whole file."""
    reader = csv.DictReader(stream)
    header = [name.strip() for name in reader.fieldnames or []]
    unknown = [name for name in header if name not in COLUMNS]
    if unknown or "external_id" not in header or len(set(header)) != len(header):
        raise InvalidInput(
            "the CSV header must name columns among "
            f"{', '.join(COLUMNS)} (external_id required, each once); got {', '.join(header)}",
            field="header",
        )
    reader.fieldnames = header
    yield from enumerate(reader, start=2)


class MemberImporter:
    """Imports chunks of one batch. Keeps what it needs across chunks (stores, tiers, the
    external ids seen in this run, so a duplicate in the file is an error, not a skip)."""

    def __init__(
        self, *, batch: str, now: datetime, actor: str, default_region: str | None = None
    ) -> None:
        if not 1 <= len(batch) <= 64:
            raise InvalidInput("a batch name is 1-64 characters", field="batch")
        self.batch, self.now, self.actor = batch, now, actor
        self.default_region = default_region
        self.store_ids = set(db.session.scalars(sa.select(Store.id)))
        self.tier_ids = dict(db.session.execute(sa.select(Tier.code, Tier.id)).all())
        self.policy = current_app.extensions["omniloyal.settings"].points_expiry
        self.seen_external_ids: dict[str, int] = {}

    # --- validation -------------------------------------------------------------------------

    def parse(self, number: int, raw: dict[str, Any]) -> tuple[_Row | None, list[RowError]]:
        if None in raw:  # more values than header columns
            return None, [RowError(number, "", "more values than columns in the header")]
        values = {key: (value or "").strip() for key, value in raw.items()}
        external_id = values.get("external_id", "")
        errors: list[RowError] = []

        def check(column: str, parse: Callable[[str], Any]) -> Any:
            try:
                return parse(values.get(column, ""))
            except _RowInvalid as error:
                errors.append(RowError(number, error.column, error.message, external_id or None))
            except InvalidInput as error:
                errors.append(RowError(number, column, error.detail, external_id or None))
            return None

        check("external_id", self._external_id)
        identities = {}
        for kind in IDENTITY_COLUMNS:
            if values.get(kind):
                canonical = check(
                    kind, lambda v, k=kind: normalise(k, v, default_region=self.default_region)
                )
                if canonical is not None:
                    identities[kind] = canonical
        if not any(values.get(kind) for kind in IDENTITY_COLUMNS):
            errors.append(
                RowError(
                    number,
                    "phone",
                    "a member needs at least one of phone, email, card or app_user",
                    external_id or None,
                )
            )
        member = {
            "name": check("name", lambda v: _text(v, 200, "name")),
            "birthday": check("birthday", _birthday),
            "locale": check("locale", _locale) or "en",
            "timezone": check("timezone", self._timezone) or "UTC",
            "region": check("region", lambda v: _text(v, 64, "region")),
            "home_store_id": check("home_store_id", self._store),
            "tier_id": check("tier", self._tier),
        }
        points = check("opening_points", _points) or 0
        expires_at = check("opening_points_expire_at", self._expiry)
        qualifying = check("qualifying_points", lambda v: _points(v, "qualifying_points"))
        consents = {
            channel: granted
            for column, channel in CONSENT_COLUMNS.items()
            if (granted := check(column, lambda v, c=column: _yes_no(v, c))) is not None
        }
        consent_at = check("marketing_consent_at", self._consent_at)
        if consent_at is not None and not consents:
            errors.append(
                RowError(number, "marketing_consent_at",
                         "a consent time needs a *_marketing value", external_id or None)
            )  # fmt: skip
        if errors:
            return None, errors
        if external_id in self.seen_external_ids:
            first = self.seen_external_ids[external_id]
            return None, [RowError(number, "external_id", f"duplicate of row {first}", external_id)]
        self.seen_external_ids[external_id] = number
        if points and expires_at is None:
            expires_at = self.policy.expires_at(self.now)
        if not values.get("qualifying_points"):
            qualifying = points  # the old program's balance stands in for its qualification
        row = _Row(number, external_id, identities, member, points, expires_at, qualifying,
                   consents, consent_at)  # fmt: skip
        return row, []

    def _external_id(self, value: str) -> str:
        if not value:
            raise _RowInvalid("external_id", "external_id is required")
        return _text(value, 128, "external_id")

    def _timezone(self, value: str) -> str | None:
        return validate_timezone(value) if value else None

    def _store(self, value: str) -> str | None:
        if value and value not in self.store_ids:
            raise _RowInvalid("home_store_id", f"no store {value!r}")
        return value or None

    def _tier(self, value: str) -> int | None:
        if value and value not in self.tier_ids:
            raise _RowInvalid("tier", f"no tier {value!r}")
        return self.tier_ids[value] if value else None

    def _consent_at(self, value: str) -> datetime | None:
        if not value:
            return None
        try:
            given = datetime.fromisoformat(value)
        except ValueError:
            raise _RowInvalid(
                "marketing_consent_at", f"{value!r} is not a date or time (ISO 8601)"
            ) from None
        if given.tzinfo is None:  # a date, or a time without offset: UTC
            given = given.replace(tzinfo=UTC)
        if given > self.now:
            raise _RowInvalid("marketing_consent_at", "a consent can't be given in the future")
        return given

    def _expiry(self, value: str) -> datetime | None:
        if not value:
            return None
        day = _date(value, "opening_points_expire_at")
        # The date is the last day the points count: they expire at the end of it (UTC).
        expires_at = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        if expires_at <= self.now:
            raise _RowInvalid("opening_points_expire_at", "these points have already expired")
        return expires_at

    # --- writing ----------------------------------------------------------------------------

    def parse_chunk(
        self, raw_rows: list[tuple[int, dict[str, Any]]]
    ) -> tuple[list[_Row], ChunkResult]:
        """Validate a chunk without touching the database (so it can run in another thread
        while the previous chunk is being written)."""
        result = ChunkResult(last_row=raw_rows[-1][0] if raw_rows else 0)
        rows: list[_Row] = []
        for number, raw in raw_rows:
            row, errors = self.parse(number, raw)
            result.errors.extend(errors)
            if row is not None:
                rows.append(row)
        return rows, result

    def write_chunk(self, rows: list[_Row], result: ChunkResult) -> ChunkResult:
        """Write the valid rows of a parsed chunk that aren't imported or clashing yet."""
        rows = self._without_imported(rows, result)
        rows = self._without_taken_external_ids(rows, result)
        rows = self._without_taken_identities(rows, result)
        try:
            with db.session.begin_nested():
                self._insert(rows)
        except sa.exc.IntegrityError:
            # A concurrent enrolment or import took an identity after our check: go row by
            # row so only the rows that clash become errors.
            rows = self._insert_one_by_one(rows, result)
        result.imported = len(rows)
        result.points = sum(row.points for row in rows)
        if rows:
            outbox.emit(
                "members.imported",
                member_id=None,
                payload={
                    "batch": self.batch,
                    "count": len(rows),
                    "points": result.points,
                    "member_ids": [row.member["id"] for row in rows],
                },
                now=self.now,
            )
        result.errors.sort(key=lambda error: error.row)
        return result

    def _without_imported(self, rows: list[_Row], result: ChunkResult) -> list[_Row]:
        if not rows:
            return rows
        done = set(
            db.session.scalars(
                sa.select(MemberImport.external_id).where(
                    MemberImport.batch == self.batch,
                    one_of(MemberImport.external_id, [row.external_id for row in rows]),
                )
            )
        )
        result.skipped += len(done)
        return [row for row in rows if row.external_id not in done]

    def _without_taken_external_ids(self, rows: list[_Row], result: ChunkResult) -> list[_Row]:
        """The file's external_id becomes the member's (`ext:<id>` in the API); one that a
        member already has (enrolled since, or imported by another batch) is a row error."""
        if not rows:
            return rows
        taken = set(
            db.session.scalars(
                sa.select(Member.external_id).where(
                    one_of(Member.external_id, [row.external_id for row in rows])
                )
            )
        )
        for row in rows:
            if row.external_id in taken:
                result.errors.append(
                    RowError(
                        row.number,
                        "external_id",
                        "this external_id already belongs to a member",
                        row.external_id,
                    )
                )
        return [row for row in rows if row.external_id not in taken]

    def _without_taken_identities(self, rows: list[_Row], result: ChunkResult) -> list[_Row]:
        taken: set[tuple[str, str]] = set()
        for kind in IDENTITY_COLUMNS:
            values = [row.identities[kind] for row in rows if kind in row.identities]
            if values:
                taken.update(
                    (kind, value)
                    for value in db.session.scalars(
                        sa.select(MemberIdentity.value).where(
                            MemberIdentity.kind == kind, one_of(MemberIdentity.value, values)
                        )
                    )
                )
        in_chunk: dict[tuple[str, str], int] = {}
        kept = []
        for row in rows:
            clash = None
            for kind, value in row.identities.items():
                if (kind, value) in taken:
                    clash = RowError(row.number, kind, f"this {kind} already belongs to a member")
                elif (kind, value) in in_chunk:
                    clash = RowError(
                        row.number, kind, f"this {kind} is also on row {in_chunk[(kind, value)]}"
                    )
                if clash:
                    break
            if clash is not None:
                result.errors.append(
                    RowError(clash.row, clash.column, clash.message, row.external_id)
                )
                continue
            for key in row.identities.items():
                in_chunk[key] = row.number
            kept.append(row)
        return kept

    def _insert_one_by_one(self, rows: list[_Row], result: ChunkResult) -> list[_Row]:
        kept = []
        for row in rows:
            try:
                with db.session.begin_nested():
                    self._insert([row])
                kept.append(row)
            except sa.exc.IntegrityError:
                result.errors.append(
                    RowError(
                        row.number,
                        "",
                        "clashed with a concurrent change; run the file again to retry this row",
                        row.external_id,
                    )
                )
        return kept

    def _insert(self, rows: list[_Row]) -> None:
        if not rows:
            return
        now = self.now
        for row, member_id in zip(rows, allocate_ids(Member.__table__, len(rows)), strict=True):
            row.member["id"] = member_id
        bulk_insert(
            Member.__table__,
            [
                {
                    **row.member,
                    "external_id": row.external_id,
                    "status": MemberStatus.ACTIVE.value,
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for row in rows
            ],
        )
        bulk_insert(
            MemberIdentity.__table__,
            [
                {"member_id": row.member["id"], "kind": kind, "value": value, "created_at": now}
                for row in rows
                for kind, value in row.identities.items()
            ],
        )
        kinds = (AccountKind.MEMBER_POINTS, AccountKind.MEMBER_PENDING, AccountKind.MEMBER_DEBT)
        account_ids = iter(allocate_ids(LedgerAccount.__table__, len(rows) * len(kinds)))
        accounts = [
            {
                "id": next(account_ids),
                "member_id": row.member["id"],
                "kind": kind.value,
                "code": None,
                "held": 0,
                "balance": row.points if kind == AccountKind.MEMBER_POINTS else 0,
            }
            for row in rows
            for kind in kinds
        ]
        bulk_insert(LedgerAccount.__table__, accounts)
        # the opening entries credit the points account
        points_accounts = {
            account["member_id"]: account["id"]
            for account in accounts
            if account["kind"] == AccountKind.MEMBER_POINTS
        }
        self._open_balances([row for row in rows if row.points], points_accounts)
        self._carry_consents([row for row in rows if row.consents])
        bulk_insert(
            MemberImport.__table__,
            [
                {
                    "batch": self.batch,
                    "external_id": row.external_id,
                    "member_id": row.member["id"],
                    "opening_points": row.points,
                    "qualifying_points": row.qualifying_points,
                    "imported_at": now,
                }
                for row in rows
            ],
        )

    def _carry_consents(self, rows: list[_Row]) -> None:
        """The old system's marketing consents: current state and history, source import."""
        if not rows:
            return
        from notifications.consent import ConsentChange, ConsentSource, MemberConsent

        common = {
            "purpose": "marketing",
            "source": ConsentSource.IMPORT.value,
            "actor": self.actor[:200],
            "place": f"import {self.batch}"[:100],
        }
        given = [
            (row.member["id"], channel, granted, row.consent_at or self.now)
            for row in rows
            for channel, granted in row.consents.items()
        ]
        bulk_insert(
            MemberConsent.__table__,
            [
                {"member_id": m, "channel": c, "granted": g, "updated_at": at, **common}
                for m, c, g, at in given
            ],
        )
        bulk_insert(
            ConsentChange.__table__,
            [
                {"member_id": m, "channel": c, "granted": g, "at": at, "text_id": None, **common}
                for m, c, g, at in given
            ],
        )

    def _open_balances(self, rows: list[_Row], points_accounts: dict[int, int]) -> None:
        if not rows:
            return
        now = self.now
        tx_ids = allocate_ids(LedgerTransaction.__table__, len(rows))
        lot_ids = allocate_ids(PointLot.__table__, len(rows))
        bulk_insert(
            LedgerTransaction.__table__,
            [
                {
                    "id": tx_id,
                    "member_id": row.member["id"],
                    "kind": TransactionKind.OPENING.value,
                    "cause_type": CAUSE_TYPE,
                    "cause_ref": self.batch,
                    "amount": row.points,
                    "reverses_id": None,
                    "actor": self.actor,
                    "reason": None,
                    "details": {"external_id": row.external_id},
                    "created_at": now,
                }
                for row, tx_id in zip(rows, tx_ids, strict=True)
            ],
        )
        bulk_insert(
            PointLot.__table__,
            [
                {
                    "id": lot_id,
                    "member_id": row.member["id"],
                    "status": LotStatus.AVAILABLE.value,
                    "amount": row.points,
                    "remaining": row.points,
                    "earned_at": now,
                    "available_at": None,
                    "expires_at": row.expires_at,
                    "source_transaction_id": tx_id,
                    "cause_type": CAUSE_TYPE,
                    "cause_ref": self.batch,
                }
                for row, tx_id, lot_id in zip(rows, tx_ids, lot_ids, strict=True)
            ],
        )
        opening = program_account_id(ProgramAccount.OPENING)
        bulk_insert(
            LedgerEntry.__table__,
            [
                {
                    "transaction_id": tx_id,
                    "from_account_id": opening,
                    "to_account_id": points_accounts[row.member["id"]],
                    "amount": row.points,
                    "lot_id": lot_id,
                    "created_at": now,
                }
                for row, tx_id, lot_id in zip(rows, tx_ids, lot_ids, strict=True)
            ],
        )


# --- bulk writing ---------------------------------------------------------------------------


def allocate_ids(table: sa.Table, count: int) -> list[int]:
    """Reserve `count` primary keys, so parent and child rows can be written without a
    RETURNING round trip per table.

    PostgreSQL: from the id column's own sequence (concurrent writers never collide).
    SQLite: after the current maximum; safe because our transactions start with
    BEGIN IMMEDIATE, so this one holds the only write lock until it commits.
    """
    if count == 0:
        return []
    if db.session.get_bind().dialect.name == "postgresql":
        return list(
            db.session.scalars(
                sa.select(
                    sa.func.nextval(sa.func.pg_get_serial_sequence(table.name, "id"))
                ).select_from(sa.func.generate_series(1, count))
            )
        )
    start = (db.session.scalar(sa.select(sa.func.max(table.c.id))) or 0) + 1
    return list(range(start, start + count))


def one_of(column: Any, values: list[str]) -> Any:
    """`column IN (...)`; on PostgreSQL `= ANY(:array)`, one parameter instead of thousands."""
    if db.session.get_bind().dialect.name != "postgresql":
        return column.in_(values)
    from sqlalchemy.dialects.postgresql import ARRAY

    return column == sa.any_(
        sa.cast(sa.bindparam(None, values, type_=ARRAY(sa.Text())), ARRAY(sa.Text()))
    )


def _array_type(column: sa.Column[Any]) -> Any:
    """The PostgreSQL element type to ship a column's values as one array parameter."""
    column_type = column.type
    if isinstance(column_type, sa.types.NullType) and column.foreign_keys:
        column_type = next(iter(column.foreign_keys)).column.type  # an unresolved FK column
    if isinstance(column_type, sa.types.TypeDecorator):
        column_type = column_type.impl
    for kind, element in (
        (sa.DateTime, sa.DateTime(timezone=True)),
        (sa.Date, sa.Date()),
        (sa.Boolean, sa.Boolean()),
        (sa.Integer, sa.BigInteger()),
    ):
        if isinstance(column_type, kind):
            return element
    return sa.Text()  # strings, and JSON sent as text then cast to JSONB


def bulk_insert(table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows with one Core statement.

    PostgreSQL: INSERT ... SELECT unnest(:col1), unnest(:col2) ... with one array parameter
    per column (a scalar for a column that is the same on every row): one short statement
    whatever the row count (a multi-row VALUES list makes
    the driver rewrite tens of thousands of placeholders, which dominated the import).
    SQLite: executemany of a plain INSERT (in-process, already fast).
    """
    if not rows:
        return
    if db.session.get_bind().dialect.name != "postgresql":
        db.session.execute(sa.insert(table), rows)
        return
    from sqlalchemy.dialects.postgresql import ARRAY, JSONB

    names = list(rows[0])
    selected = []
    for name in names:
        column = table.c[name]
        values = [row[name] for row in rows]
        if all(value == values[0] for value in values):  # a constant: one scalar, no array
            selected.append(sa.bindparam(f"p_{name}", values[0], type_=column.type))
            continue
        element = _array_type(column)
        if isinstance(column.type, sa.JSON):
            values = [None if v is None else json.dumps(v) for v in values]
        unnested = sa.func.unnest(
            sa.cast(sa.bindparam(f"p_{name}", values, type_=ARRAY(element)), ARRAY(element))
        )
        selected.append(sa.cast(unnested, JSONB) if isinstance(column.type, sa.JSON) else unnested)
    db.session.execute(sa.insert(table).from_select(names, sa.select(*selected)))


def import_members(
    stream: IO[str],
    *,
    batch: str,
    now: datetime,
    actor: str,
    chunk_size: int = 5000,
    default_region: str | None = None,
    after_chunk: Callable[[ChunkResult], None] = lambda result: None,
) -> ImportStats:
    """Import a CSV member base chunk by chunk; `after_chunk` (the caller's edge) commits.

    Never commits itself. Raises InvalidInput for a file it can't read at all (bad header);
    bad rows become RowErrors in their chunk's result.
    """
    if not 1 <= chunk_size <= 50_000:
        raise InvalidInput("chunk size between 1 and 50000", field="chunk")
    importer = MemberImporter(batch=batch, now=now, actor=actor, default_region=default_region)
    stats = ImportStats()
    chunks = _chunks(read_rows(stream), chunk_size)

    def parse_next() -> tuple[int, list[_Row], ChunkResult] | None:
        raw_rows = next(chunks, None)
        return None if raw_rows is None else (len(raw_rows), *importer.parse_chunk(raw_rows))

    # Phone parsing is the costliest Python work: the next chunk is parsed in a thread while
    # this one is written (the database driver releases the GIL while it waits).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-parse") as parser:
        upcoming = parser.submit(parse_next)
        while (parsed := upcoming.result()) is not None:
            upcoming = parser.submit(parse_next)
            count, rows, result = parsed
            result = importer.write_chunk(rows, result)
            stats.add(result, count)
            after_chunk(result)
    return stats


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


# --- column parsers -------------------------------------------------------------------------


def _text(value: str, max_length: int, column: str) -> str | None:
    if not value:
        return None
    if len(value) > max_length:
        raise _RowInvalid(column, f"at most {max_length} characters")
    if _CONTROL.search(value):
        raise _RowInvalid(column, "control characters are not allowed")
    return value


def _date(value: str, column: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _RowInvalid(column, f"{value!r} is not a date (YYYY-MM-DD)") from None


def _birthday(value: str) -> date | None:
    if not value:
        return None
    day = _date(value, "birthday")
    if not date(1900, 1, 1) <= day <= date.today():
        raise _RowInvalid("birthday", "a birthday between 1900-01-01 and today")
    return day


def _locale(value: str) -> str | None:
    if value and not _LOCALE.match(value):
        raise _RowInvalid("locale", f"{value!r} is not a locale (e.g. fr-FR)")
    return value or None


def _yes_no(value: str, column: str) -> bool | None:
    if not value:
        return None
    if value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    raise _RowInvalid(column, f"{value!r}: yes or no (or empty when not known)")


def _points(value: str, column: str = "opening_points") -> int:
    if not value:
        return 0
    if not re.fullmatch(r"\d{1,13}", value):
        raise _RowInvalid(column, f"{value!r} is not a whole number of points >= 0")
    points = int(value)
    if points > MAX_POINTS:
        raise _RowInvalid(column, f"at most {MAX_POINTS}")
    return points
