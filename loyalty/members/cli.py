"""`omniloyal members ...` (being built)."""

import click


@click.group("members")
def members_cli() -> None:
    """Member maintenance: import, export, erase."""
