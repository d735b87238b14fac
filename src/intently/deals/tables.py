from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, Integer, String, Table, Text

from intently.kit.db import metadata

deals = Table(
    "deals",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("external_deal_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("amount", Float, nullable=True),
    Column("stage_id", Text, nullable=True),
    Column("stage_label", Text, nullable=True),
    Column("pipeline_id", Text, nullable=True),
    Column("pipeline_label", Text, nullable=True),
    Column("start_date", BigInteger, nullable=True),
    Column("closed_date", BigInteger, nullable=True),
    Column("owner_name", Text, nullable=True),
    Column("owner_email", Text, nullable=True),
    Column("owner_id", Text, nullable=True),
    Column("currency_code", String(3), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
Index(
    "uq_deals_workspace_id_external_deal_id",
    deals.c.workspace_id,
    deals.c.external_deal_id,
    unique=True,
)

# A deal's associations as sent. They link to an account at read time (externalId
# first, then normalised domain), so one that matches nothing yet links by itself
# once the account appears.
deal_accounts = Table(
    "deal_accounts",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("deal_id", String(24), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("external_id", Text, nullable=True),
    Column("domain", String(253), nullable=True),
    Column("name", Text, nullable=True),
)
Index("ix_deal_accounts_workspace_id_domain", deal_accounts.c.workspace_id, deal_accounts.c.domain)
Index(
    "ix_deal_accounts_workspace_id_external_id",
    deal_accounts.c.workspace_id,
    deal_accounts.c.external_id,
)
