"""Finance reports as CSV files, for a spreadsheet: asked by `?format=csv` or `Accept: text/csv`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from flask import Response, request

ACTIVITY_COLUMNS = ("day", "issued", "redeemed", "expired", "adjusted", "reversed")
LIABILITY_COLUMNS = ("expiry_month", "points")
ACTIVITY_EXAMPLE = "day,issued,redeemed,expired,adjusted,reversed\r\n2026-11-01,1520,300,0,0,0\r\n"
LIABILITY_EXAMPLE = "expiry_month,points\r\n2026-11,12000\r\n2026-12,8400\r\nnever,0\r\n"


def wants_csv(format_param: str | None) -> bool:
    """`?format=` decides when given; else the Accept header, JSON winning a tie (`*/*`)."""
    if format_param is not None:
        return format_param == "csv"
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return best == "text/csv"


def liability_csv(report: dict[str, Any]) -> Response:
    rows = (
        (bucket["expiry_month"] or "never", bucket["points"])
        for bucket in report["by_expiry_month"]
    )
    stamp = report["as_of"].date().isoformat()
    return _csv(f"liability-{stamp}.csv", LIABILITY_COLUMNS, rows)


def activity_csv(days: list[dict[str, Any]], since: date, until: date) -> Response:
    rows = ([day[column] for column in ACTIVITY_COLUMNS] for day in days)
    return _csv(f"points-activity-{since}-{until}.csv", ACTIVITY_COLUMNS, rows)


def _csv(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Vary": "Accept"},
    )
