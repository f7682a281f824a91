"""Reports: the report and report_run tables (issue 14)

Revision ID: 4d1e2a7c9b10
Revises:
Create Date: 2026-11-30 19:30:00

"""
from alembic import op
import sqlalchemy as sa

revision = "4d1e2a7c9b10"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "jupyternotebook_report",
        sa.Column("id", sa.UnicodeText, primary_key=True),
        sa.Column("resource_id", sa.UnicodeText, nullable=False),
        sa.Column("dataset_id", sa.UnicodeText, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("schedule", sa.UnicodeText, nullable=True),
        sa.Column("timezone", sa.UnicodeText, nullable=False),
        sa.Column("on_data_change", sa.Boolean, nullable=False),
        sa.Column("time_limit", sa.Integer, nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.UnicodeText, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_jupyternotebook_report_resource_id",
                    "jupyternotebook_report", ["resource_id"])
    op.create_index("ix_jupyternotebook_report_dataset_id",
                    "jupyternotebook_report", ["dataset_id"])
    op.create_index("ix_jupyternotebook_report_next_run_at",
                    "jupyternotebook_report", ["next_run_at"])

    op.create_table(
        "jupyternotebook_report_run",
        sa.Column("id", sa.UnicodeText, primary_key=True),
        sa.Column("report_id", sa.UnicodeText,
                  sa.ForeignKey("jupyternotebook_report.id",
                                ondelete="CASCADE"),
                  nullable=False),
        sa.Column("trigger", sa.UnicodeText, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("status", sa.UnicodeText, nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("published", sa.JSON, nullable=False),
        sa.Column("requested_by", sa.UnicodeText, nullable=True),
        sa.Column("job_id", sa.UnicodeText, nullable=True),
    )
    op.create_index("ix_jupyternotebook_report_run_report_id",
                    "jupyternotebook_report_run", ["report_id"])
    # never two runs of one report at once, whoever starts them
    op.create_index("jupyternotebook_report_run_one_active",
                    "jupyternotebook_report_run", ["report_id"], unique=True,
                    postgresql_where=sa.text(
                        "status IN ('queued', 'running')"))


def downgrade():
    op.drop_table("jupyternotebook_report_run")
    op.drop_table("jupyternotebook_report")
