"""Demo dashboard users, one per role, for `make run` (local demo data only)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from loyalty.dashboard import users
from loyalty.dashboard.models import ROLES, DashboardUser
from loyalty.db import db

DEMO_DOMAIN = "demo.omniloyal.test"


def demo_login(role: str) -> tuple[str, str]:
    """(email, password) of the demo user with `role`."""
    return f"{role}@{DEMO_DOMAIN}", f"demo-{role}-2026"


def ensure_demo_users(now: datetime) -> dict[str, tuple[str, str]]:
    """Create the demo users that are missing; role -> (email, password)."""
    logins = {role: demo_login(role) for role in ROLES}
    existing = set(
        db.session.scalars(
            sa.select(DashboardUser.email).where(DashboardUser.email.like(f"%@{DEMO_DOMAIN}"))
        )
    )
    for role, (email, password) in logins.items():
        if email not in existing:
            users.create_user(
                email=email,
                name=f"Demo {role}",
                password=password,
                role=role,
                locale="zh_CN" if role == "analyst" else "en",
                now=now,
            )
    return logins
