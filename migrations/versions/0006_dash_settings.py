"""consent texts (append-only, versioned), the text a consent was granted under, pending
TOTP enrolment of dashboard users

Revision ID: 0006_dash_settings
Revises: 0005_dashboard
Create Date: 2026-12-01 02:40:00

"""
from alembic import op
import sqlalchemy as sa
import loyalty.db  # noqa: F401 - custom column types (UTCDateTime)

from loyalty.ledger.models import _PG_FUNCTION, append_only_ddl

revision = "0006_dash_settings"
down_revision = "0005_dashboard"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = loyalty.db.UTCDateTime(timezone=True)


def upgrade():
    op.create_table(
        "consent_texts",
        sa.Column("id", BigInt, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_texts")),
        sa.UniqueConstraint(
            "channel", "purpose", "locale", "version",
            name=op.f("uq_consent_texts_channel_purpose_locale_version"),
        ),  # fmt: skip
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
    for statement in append_only_ddl("consent_texts", dialect):
        op.execute(statement)
    with op.batch_alter_table("consent_changes") as batch:
        batch.add_column(sa.Column("text_id", BigInt, nullable=True))
        batch.create_foreign_key(
            op.f("fk_consent_changes_text_id_consent_texts"), "consent_texts", ["text_id"], ["id"]
        )
    with op.batch_alter_table("dashboard_users") as batch:
        batch.add_column(sa.Column("totp_pending_secret", sa.String(64), nullable=True))


def downgrade():
    with op.batch_alter_table("dashboard_users") as batch:
        batch.drop_column("totp_pending_secret")
    with op.batch_alter_table("consent_changes") as batch:
        batch.drop_constraint(op.f("fk_consent_changes_text_id_consent_texts"), type_="foreignkey")
        batch.drop_column("text_id")
    op.drop_table("consent_texts")
