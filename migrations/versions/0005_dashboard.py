"""dashboard users, the append-only audit log, overview figures

Revision ID: 0005_dashboard
Revises: 0005_campaigns (merged in; the lead re-chains migrations when merging)
Create Date: 2026-11-30 20:40:00

"""
from alembic import op
import sqlalchemy as sa
import loyalty.db  # noqa: F401 - custom column types (UTCDateTime)
from sqlalchemy.dialects import postgresql

from loyalty.ledger.models import _PG_FUNCTION, append_only_ddl

revision = "0005_dashboard"
down_revision = "0005_journeys"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONType = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
When = loyalty.db.UTCDateTime(timezone=True)


def upgrade():
    op.create_table(
        "dashboard_users",
        sa.Column("id", BigInt, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("last_login_at", When, nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'marketer', 'analyst', 'support', 'finance')",
            name=op.f("ck_dashboard_users_role_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_users")),
        sa.UniqueConstraint("email", name=op.f("uq_dashboard_users_email")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BigInt, nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target_type", sa.String(50), nullable=True),
        sa.Column("target_id", sa.String(100), nullable=True),
        sa.Column("before", JSONType, nullable=True),
        sa.Column("after", JSONType, nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_target", "audit_log", ["target_type", "target_id", "id"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor", "id"])
    op.create_index("ix_audit_log_action", "audit_log", ["action", "id"])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
    for statement in append_only_ddl("audit_log", dialect):
        op.execute(statement)
    op.create_table(
        "audit_reasons",
        sa.Column("entry_id", BigInt, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["audit_log.id"], name=op.f("fk_audit_reasons_entry_id_audit_log")
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_audit_reasons")),
    )
    op.create_table(
        "dashboard_daily_figures",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(50), nullable=False),
        sa.Column("value", BigInt, nullable=False),
        sa.PrimaryKeyConstraint("day", "metric", name=op.f("pk_dashboard_daily_figures")),
    )
    op.create_table(
        "dashboard_stats_cursors",
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("last_id", BigInt, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dashboard_stats_cursors")),
    )
    op.create_table(
        "dashboard_overview_snapshots",
        sa.Column("id", BigInt, nullable=False),
        sa.Column("computed_at", When, nullable=False),
        sa.Column("figures", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_overview_snapshots")),
    )


def downgrade():
    op.drop_table("dashboard_overview_snapshots")
    op.drop_table("dashboard_stats_cursors")
    op.drop_table("dashboard_daily_figures")
    op.drop_table("audit_reasons")
    op.drop_table("audit_log")
    op.drop_table("dashboard_users")
