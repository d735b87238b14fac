from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, Integer, String, Table, Text

from intently.kit.db import metadata

contacts = Table(
    "contacts",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("email", String(320), nullable=False),  # lower-cased
    Column("external_contact_id", Text, nullable=True),
    Column("name", Text, nullable=True),
    Column("title", Text, nullable=True),
    Column("department", Text, nullable=True),
    Column("seniority", Text, nullable=True),
    Column("phone", Text, nullable=True),
    Column("linkedin_url", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
Index("uq_contacts_workspace_id_email", contacts.c.workspace_id, contacts.c.email, unique=True)

activities = Table(
    "activities",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("external_activity_id", Text, nullable=False),
    Column("activity_type", String(32), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    # Normalised; links to the account with this domain, now or once it exists.
    Column("domain", String(253), nullable=False),
    Column("account_name", Text, nullable=True),
    Column("subject", Text, nullable=True),
    Column("owner_email", Text, nullable=False),
    Column("owner_name", Text, nullable=True),
    Column("owner_id", Text, nullable=True),
    Column("from_name", Text, nullable=True),
    Column("from_email", Text, nullable=True),
    Column("call_title", Text, nullable=True),
    Column("duration_minutes", Float, nullable=True),
    Column("outcome", Text, nullable=True),
    Column("direction", String(16), nullable=True),
    Column("open_count", Integer, nullable=True),
    Column("click_count", Integer, nullable=True),
    Column("reply_count", Integer, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)
Index(
    "uq_activities_workspace_id_external_activity_id",
    activities.c.workspace_id,
    activities.c.external_activity_id,
    unique=True,
)
Index(
    "ix_activities_workspace_id_domain_occurred_at",
    activities.c.workspace_id,
    activities.c.domain,
    activities.c.occurred_at,
)

activity_contacts = Table(
    "activity_contacts",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("activity_id", String(24), primary_key=True),
    Column("contact_id", String(24), primary_key=True),
)
