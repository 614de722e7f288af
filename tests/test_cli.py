"""The `omniloyal` command: its own run (with the embedded worker), keys, demo."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask.cli import ScriptInfo

from loyalty.auth.keys import client_for_key, revoke_api_client
from loyalty.auth.models import ApiClient
from loyalty.cli import _create_app, create_api_key_command, demo_command, main, run_command
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.demo import DEMO_KEYS, DEMO_KEYS_FILE


def test_run_is_omniloyals_own_command_not_flasks():
    # What FlaskGroup.make_context gives the `omniloyal` command: its own app factory.
    context = click.Context(main, obj=ScriptInfo(create_app=_create_app))
    assert main.get_command(context, "run") is run_command
    for name in ("worker", "demo", "create-api-key", "db", "shell"):
        assert main.get_command(context, name) is not None, name


def test_create_api_key_prints_the_key_once_and_refuses_unknown_scopes(app):
    runner = CliRunner()
    created = runner.invoke(create_api_key_command, ["--name", "till", "--scope", "members:read"])
    assert created.exit_code == 0, created.output
    assert created.output.startswith("olk_")
    refused = runner.invoke(create_api_key_command, ["--name", "x", "--scope", "everything"])
    assert refused.exit_code != 0 and "unknown scope" in refused.output


@pytest.fixture
def demo_keys_file(app) -> Iterator[Path]:
    path = Path(app.instance_path) / DEMO_KEYS_FILE
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


def _printed_keys(output: str) -> dict[str, str]:
    return {
        name: match.group(1)
        for name in DEMO_KEYS
        if (match := re.search(rf"^  {re.escape(name)} +(olk_\S+)", output, re.MULTILINE))
    }


def _api_client_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(ApiClient))


def test_demo_on_a_seeded_database_prints_the_same_working_keys_instead_of_minting_more(
    app, client, demo_keys_file
):
    runner = CliRunner()
    first = runner.invoke(demo_command, ["--members", "3", "--if-empty"])
    assert first.exit_code == 0, first.output
    keys = _printed_keys(first.output)
    assert set(keys) == set(DEMO_KEYS)
    assert stat.S_IMODE(demo_keys_file.stat().st_mode) == 0o600
    again = runner.invoke(demo_command, ["--members", "3", "--if-empty"])
    assert again.exit_code == 0, again.output
    assert "Demo data already there" in again.output
    assert _printed_keys(again.output) == keys
    assert _api_client_count() == len(DEMO_KEYS)
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    assert client.get("/v1/reports/liability", headers=admin).status_code == 200


def test_demo_replaces_only_the_saved_keys_that_no_longer_work(app, demo_keys_file):
    runner = CliRunner()
    keys = _printed_keys(runner.invoke(demo_command, ["--members", "2", "--if-empty"]).output)
    revoke_api_client(client_for_key(keys["web shop"]).id, now=utcnow())
    db.session.commit()
    again = runner.invoke(demo_command, ["--members", "2", "--if-empty"])
    assert again.exit_code == 0, again.output
    assert "(new: web shop)" in again.output
    printed = _printed_keys(again.output)
    assert printed["admin"] == keys["admin"] and printed["pos PAR-01"] == keys["pos PAR-01"]
    assert printed["web shop"] != keys["web shop"]
    assert client_for_key(printed["web shop"]) is not None
    assert json.loads(demo_keys_file.read_text()) == printed
