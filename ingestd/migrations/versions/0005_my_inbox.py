"""My Inbox: what an item shows and who acted on it; tickets get details

Revision: 0005
Parent: 0004

Only columns are added (SQLite does that in place, without copying a table).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_INBOX_COLUMNS = (
    ("from_name", sa.String(length=255)),
    ("message_id", sa.String(length=998)),
    ("preview", sa.Text()),
    ("received_at", sa.DateTime(timezone=True)),
    ("acted_by_id", sa.Integer()),
    ("acted_at", sa.DateTime(timezone=True)),
    ("crm_note_id", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("inbox_items") as batch:
        for name, kind in _INBOX_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("details", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("details")
    with op.batch_alter_table("inbox_items") as batch:
        for name, _ in reversed(_INBOX_COLUMNS):
            batch.drop_column(name)
