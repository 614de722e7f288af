"""`omniloyal members import` as an operator meets it: the columns in --help, a progress bar,
a summary counting rows, a report next to the input, exit status 1 when rows were rejected,
and a hint when national phone numbers were rejected for lack of --default-region."""

from __future__ import annotations

import csv

from click.testing import CliRunner

from loyalty.cli import main
from loyalty.members.importer import COLUMNS
from tests.members.factories import csv_text


def _invoke(app, *args: str):
    return app.test_cli_runner().invoke(args=["members", "import", *args])


def test_help_lists_every_column():
    result = CliRunner().invoke(main, ["members", "import", "--help"])
    assert result.exit_code == 0
    for column in COLUMNS:
        assert column in result.output
    assert "--default-region" in result.output and "rejected.csv" in result.output


def test_a_clean_file_imports_with_a_progress_bar_and_a_row_summary(app, tmp_path):
    source = tmp_path / "base.csv"
    source.write_text(
        csv_text([{"external_id": f"C{i}", "email": f"m{i}@shop.example"} for i in range(5)])
    )

    result = _invoke(app, str(source), "--chunk", "2")

    assert result.exit_code == 0, result.output
    assert "importing 5 rows" in result.output  # the bar's label, with the total
    assert "5 rows: 5 imported, 0 already imported, 0 rejected" in result.output
    assert not (tmp_path / "base.rejected.csv").exists()


def test_rejected_rows_are_counted_once_reported_next_to_the_input_and_fail_the_run(app, tmp_path):
    source = tmp_path / "shop.csv"
    source.write_text(
        csv_text(
            [
                {"external_id": "A", "email": "a@shop.example"},
                # two bad cells, one rejected row
                {"external_id": "B", "email": "broken", "birthday": "yesterday"},
                {"external_id": "C", "email": "c@shop.example"},
            ]
        )
    )

    result = _invoke(app, str(source))

    assert result.exit_code == 1
    assert "3 rows: 2 imported, 0 already imported, 1 rejected" in result.output
    report = tmp_path / "shop.rejected.csv"
    assert str(report) in result.output
    with open(report, newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["row", "column", "message", "external_id"]
    assert sorted(line[1] for line in lines[1:]) == ["birthday", "email"]
    assert {line[0] for line in lines[1:]} == {"3"}

    rerun = _invoke(app, str(source))  # the good rows are there; the bad one still is bad
    assert "0 imported, 2 already imported, 1 rejected" in rerun.output


def test_national_numbers_rejected_without_a_region_get_a_hint(app, tmp_path):
    source = tmp_path / "stores.csv"
    source.write_text(
        csv_text(
            [
                {"external_id": "N1", "phone": "06 12 34 56 78"},
                {"external_id": "N2", "phone": "+33612345679"},
            ]
        )
    )

    refused = _invoke(app, str(source))
    assert refused.exit_code == 1
    assert "1 rejected" in refused.output and "--default-region" in refused.output

    fixed = _invoke(app, str(source), "--default-region", "FR")
    assert fixed.exit_code == 0, fixed.output
    assert "1 imported, 1 already imported, 0 rejected" in fixed.output
    assert not (tmp_path / "stores.rejected.csv").exists()  # the stale report is gone
