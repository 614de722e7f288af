"""The `omniloyal` command: its own run (with the embedded worker), keys, demo."""

from __future__ import annotations

import click
from click.testing import CliRunner
from flask.cli import ScriptInfo

from loyalty.cli import _create_app, create_api_key_command, main, run_command


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
