"""The throw-away benchmark database: create, build the schema, drop."""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

import psycopg

from bench.environment import BenchError

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"


class BenchDatabase:
    """A fresh database `omniloyal_bench_<pid>` on the server at `server_url`."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url.rstrip("/")
        self.name = f"omniloyal_bench_{os.getpid()}"
        self.url = f"{self.server_url}/{self.name}"  # postgresql://... for psql and pgbench
        self.created = False

    @property
    def admin_url(self) -> str:
        return f"{self.server_url}/postgres"

    def create(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def drop(self) -> None:
        if not self.created:
            return
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.created = False

    def build_schema(self, env: dict[str, str]) -> str:
        """Migrations when the project has any, else create_all. Returns which was used."""
        if glob.glob(str(REPO / "migrations" / "versions" / "*.py")):
            result = subprocess.run(
                [str(VENV_BIN / "omniloyal"), "db", "upgrade"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise BenchError(f"omniloyal db upgrade failed:\n{result.stderr[-3000:]}")
            return "migrations (omniloyal db upgrade)"
        from bench.appctx import bench_app
        from loyalty.db import db

        with bench_app().app_context():
            db.create_all()
        return "db.create_all() (no migrations yet)"

    def psql(self, sql: str, *, timeout: float = 600) -> str:
        result = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", self.url, "-c", sql],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise BenchError(f"psql failed: {result.stderr.strip()}\nSQL: {sql[:500]}")
        return result.stdout.strip()

    def settle(self) -> None:
        """Vacuum and checkpoint now, before a scenario: otherwise it runs while autovacuum
        and the checkpointer work through the last scenario's writes on the same 2 cores,
        and its raw baseline, run after it, finds a quiet database (balance reads ran at
        740/s right after the orders scenario, 1,234/s on their own)."""
        self.psql("VACUUM (ANALYZE)")
        self.psql("CHECKPOINT")

    def psql_file(
        self, path: Path, variables: dict[str, object] | None = None, *, timeout: float = 600
    ) -> str:
        """Run a SQL file; `variables` become psql :names (psql -c would not expand them)."""
        defines = [f"--set={name}={value}" for name, value in (variables or {}).items()]
        command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", *defines, self.url]
        result = subprocess.run(
            [*command, "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise BenchError(f"psql -f {path.name} failed: {result.stderr.strip()}")
        return result.stdout.strip()
