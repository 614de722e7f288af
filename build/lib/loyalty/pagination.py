"""One list envelope and one pagination style for every list the API returns.

Every list answers `{"items": [...], "next_cursor": "..." | null}` and takes `limit` (1-200,
default 50) and `cursor` query parameters: pass the previous page's `next_cursor` as
`cursor` to get the next page; `next_cursor` is null on the last page. A cursor is opaque to
clients; here it is the sort key of the last item returned (keyset pagination: a row added
meanwhile never shifts a page), so it stays valid however long the client waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from marshmallow import Schema, fields, validate

from loyalty.db import BIGINT_MAX
from loyalty.errors import InvalidInput
from loyalty.schemas import StrictSchema

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class PageQuery(StrictSchema):
    """`limit` and `cursor`: the query parameters of every list."""

    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": f"Items per page (1-{MAX_LIMIT}, default {DEFAULT_LIMIT})."},
    )
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "The previous page's `next_cursor`, for the next page; omit it for "
            "the first page. Opaque: don't build one."
        },
    )


_PAGE_SCHEMAS: dict[str, type[Schema]] = {}


def page_schema(item: type[Schema], name: str | None = None) -> type[Schema]:
    """The envelope `{"items": [item...], "next_cursor": ...}` of a list of `item`."""
    name = name or item.__name__.removesuffix("Schema") + "PageSchema"
    if name not in _PAGE_SCHEMAS:
        _PAGE_SCHEMAS[name] = type(
            name,
            (Schema,),
            {
                "__doc__": f"A page of {item.__name__.removesuffix('Schema')} items.",
                "items": fields.List(fields.Nested(item), required=True),
                "next_cursor": fields.String(
                    allow_none=True,
                    required=True,
                    metadata={
                        "description": "Pass as `cursor` for the next page; null on the last."
                    },
                ),
            },
        )
    return _PAGE_SCHEMAS[name]


def int_cursor(cursor: str | None) -> int | None:
    """The id a cursor of an id-ordered list stands for (422 naming `cursor` otherwise)."""
    if cursor is None:
        return None
    # ASCII digits within BIGINT: "²" passes isdigit() but not int(), a huge id overflows.
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > BIGINT_MAX:
        raise InvalidInput("cursor is not one this list returned", field="cursor")
    return int(cursor)


def page(rows: Sequence[Any], limit: int, key: Callable[[Any], Any]) -> dict[str, Any]:
    """The envelope from up to `limit + 1` rows fetched after the cursor: the extra row
    only says there is a next page."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return {"items": items, "next_cursor": str(key(items[-1])) if more and items else None}


def page_of(
    items: Iterable[Any], *, cursor: str | None, limit: int, key: Callable[[Any], int | str]
) -> dict[str, Any]:
    """Page a list built in memory (small lists: tiers, channels, a wallet), in ascending
    `key` order, the same way a query pages by its keys."""
    ordered = sorted(items, key=key)
    if cursor is not None and ordered:
        after: int | str = cursor
        if isinstance(key(ordered[0]), int):
            after = int_cursor(cursor)  # type: ignore[assignment]
        ordered = [item for item in ordered if key(item) > after]
    return page(ordered[: limit + 1], limit, key)
