"""Coupon code text: the alphabet, normalisation, fast random generation, bulk inserts.

Generated codes use Crockford's base32 alphabet (digits and upper-case letters without
I, L, O and U), so nothing on a receipt can be misread as something else. Each random
character carries 5 bits; the default 12 random characters give 60 bits from `secrets`.
A pattern such as ``SPR-####-####-####`` places the random characters ('#') between
literal characters; prefix and suffix are literals too.

Codes are stored normalised: upper-case with spaces and hyphens removed, so a member may
type ``spr-1a2b 3c4d`` and find ``SPR1A2B3C4D``. Lookups go through the unique index on
the normalised code.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.db import db, is_postgres, upsert_insert
from loyalty.errors import InvalidInput

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TO_CROCKFORD = bytes.maketrans(_RFC4648.encode(), ALPHABET.encode())
BITS_PER_CHAR = 5
MIN_RANDOM_CHARS = 12  # 60 bits
MAX_CODE_LENGTH = 64
# Codes in one generated batch: one limit for the API, the CLI and the dashboard. The API
# makes up to MAX_BATCH_AT_ONCE inside the request (~2 s here at 200,000, well within
# gateway timeouts) and answers 201; a larger batch is made by a job, a chunk per
# transaction (202, the batch `running` until `done`); the CLI makes any in one go.
MAX_BATCH = 50_000_000
MAX_BATCH_AT_ONCE = 200_000
RANDOM_SLOT = "#"
CODE_TEXT = re.compile(r"^[A-Z0-9]{3,64}$")
_SEPARATORS = re.compile(r"[\s\-]+")
CHUNK = 50_000


def normalise(code: str) -> str:
    """Upper-case, without spaces or hyphens (how every code is stored and looked up)."""
    return _SEPARATORS.sub("", code).upper()


def is_well_formed(normalised: str) -> bool:
    return bool(CODE_TEXT.match(normalised))


def random_strings(count: int, length: int) -> list[str]:
    """`count` strings of `length` Crockford characters, 5 random bits each.

    One call to the OS random source and one base32 encoding for the whole chunk: a
    million 12-character strings take well under a second.
    """
    if count <= 0:
        return []
    chars = count * length
    raw = secrets.token_bytes(((chars + 7) // 8) * 5)  # 5 bytes encode to 8 characters
    text = base64.b32encode(raw).translate(_TO_CROCKFORD).decode("ascii")
    return [text[i : i + length] for i in range(0, chars, length)]


def _literal(value: str, field: str) -> str:
    """A prefix or suffix is kept exactly as given or refused: codes are compared upper-case
    without hyphens or spaces, so `WS-` would silently become `WS` (print the hyphen on the
    voucher; a customer may type it or not)."""
    if not re.fullmatch(r"[A-Z0-9]*", value):
        raise InvalidInput(
            f"{field} may use upper-case letters and digits only (codes are compared without "
            f"hyphens or spaces): {value!r} would be stored as {normalise(value)!r}",
            field=field,
        )
    return value


class CodeFormat:
    """Prefix + pattern (or `length` random characters) + suffix."""

    def __init__(
        self,
        *,
        prefix: str | None = None,
        suffix: str | None = None,
        pattern: str | None = None,
        length: int = MIN_RANDOM_CHARS,
    ) -> None:
        self.prefix = _literal(prefix or "", "prefix")
        self.suffix = _literal(suffix or "", "suffix")
        if pattern:
            body = normalise(pattern)
            if not re.fullmatch(r"[A-Z0-9#]+", body):
                raise InvalidInput("a pattern uses '#' for random characters, plus letters/digits")
            self.slots = [i for i, ch in enumerate(body) if ch == RANDOM_SLOT]
            self.template = body
        else:
            self.slots = list(range(length))
            self.template = RANDOM_SLOT * length
        self.random_chars = len(self.slots)
        if self.random_chars < MIN_RANDOM_CHARS:
            raise InvalidInput(
                f"codes need at least {MIN_RANDOM_CHARS} random characters "
                f"({MIN_RANDOM_CHARS * BITS_PER_CHAR} bits); got {self.random_chars}"
            )
        total = len(self.prefix) + len(self.template) + len(self.suffix)
        if total > MAX_CODE_LENGTH:
            raise InvalidInput(f"codes may be at most {MAX_CODE_LENGTH} characters long")
        self._plain = self.template == RANDOM_SLOT * self.random_chars

    @property
    def entropy_bits(self) -> int:
        return self.random_chars * BITS_PER_CHAR

    def make(self, count: int) -> list[str]:
        randoms = random_strings(count, self.random_chars)
        if self._plain:
            return [f"{self.prefix}{r}{self.suffix}" for r in randoms]
        # The alphabet has no braces, so the template becomes a str.format pattern.
        template = self.prefix + self.template.replace(RANDOM_SLOT, "{}") + self.suffix
        return [template.format(*r) for r in randoms]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_codes(codes: Iterable[str], constants: dict[str, Any]) -> int:
    """Insert codes with the same other columns; skip (and count out) any that exist.

    Returns how many rows were inserted. On PostgreSQL the codes are COPYed into a temp
    table and moved with one INSERT ... SELECT ... ON CONFLICT DO NOTHING per chunk; on
    SQLite, executemany with ON CONFLICT DO NOTHING.
    """
    codes = list(codes)
    if not codes:
        return 0
    if is_postgres():
        return _insert_codes_postgres(codes, constants)
    from loyalty.coupons.models import CouponCode

    table = CouponCode.__table__
    before = _count_batch_or_none(constants)
    statement = upsert_insert(table).on_conflict_do_nothing(index_elements=["code"])
    inserted = 0
    for chunk in _chunks(codes, CHUNK):
        result = db.session.execute(statement, [{"code": c, **constants} for c in chunk])
        inserted += max(result.rowcount or 0, 0)
    if before is not None:
        inserted = _count_batch_or_none(constants) - before  # type: ignore[operator]
    return inserted


def _count_batch_or_none(constants: dict[str, Any]) -> int | None:
    from loyalty.coupons.models import CouponCode

    batch_id = constants.get("batch_id")
    if batch_id is None:
        return None
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(CouponCode).where(CouponCode.batch_id == batch_id)
    )


def _insert_codes_postgres(codes: list[str], constants: dict[str, Any]) -> int:
    from loyalty.coupons.models import CouponCode

    table = CouponCode.__table__
    temp = f"coupon_codes_in_{uuid.uuid4().hex[:12]}"
    connection = db.session.connection()
    raw = connection.connection.driver_connection
    # NULL constants are left out: their columns default to NULL, and an untyped NULL in
    # the SELECT list would be read as text.
    columns = sorted(name for name, value in constants.items() if value is not None)
    select_list = ", ".join(["code", *[f"%({name})s" for name in columns]])
    column_list = ", ".join(["code", *columns])
    with raw.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE {temp} (code text) ON COMMIT DROP")
        with cursor.copy(f"COPY {temp} (code) FROM STDIN") as copy:
            for chunk in _chunks(codes, CHUNK):
                copy.write("\n".join(chunk) + "\n")
        cursor.execute(
            f"INSERT INTO {table.name} ({column_list}) SELECT {select_list} FROM {temp} "
            "ON CONFLICT (code) DO NOTHING",
            {name: _pg_value(constants[name]) for name in columns},
        )
        inserted = cursor.rowcount
        cursor.execute(f"DROP TABLE {temp}")
    return inserted


def _pg_value(value: Any) -> Any:
    return value.value if hasattr(value, "value") and not isinstance(value, datetime) else value
