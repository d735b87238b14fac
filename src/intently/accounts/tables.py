from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
)

from intently.kit.db import JSONDoc, metadata

accounts = Table(
    "accounts",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),  # rtp_aid
    Column("domain", String(253), nullable=False),  # normalised
    Column("name", Text, nullable=False),
    Column("external_id", Text, nullable=True),
    Column("short_name", Text, nullable=True),
    Column("linkedin_url", Text, nullable=True),
    # The company profile (extension fields; NULL: unknown). Industry is kept as given.
    Column("industry", Text, nullable=True),
    Column("employee_count", BigInteger, nullable=True),
    Column("annual_revenue", Float, nullable=True),  # USD
    Column("country", String(2), nullable=True),  # ISO 3166-1 alpha-2, upper case
    Column("city", Text, nullable=True),
    Column("logo_url", Text, nullable=True),
    Column("tags", JSONDoc, nullable=False),
    # Values by custom field key, including keys of deactivated fields (kept, hidden).
    Column("custom_fields", JSONDoc, nullable=False),
    # Scores are 0 to 100 and stored rounded to 2 decimals: the API shows them as stored.
    Column("rtp_account_score", Float, nullable=False, default=0),
    Column("rtp_website_intent_score", Float, nullable=False, default=0),
    Column("rtp_bombora_intent_score", Float, nullable=False, default=0),
    Column("rtp_g2_intent_score", Float, nullable=False, default=0),
    Column("rtp_advertising_activity_score", Float, nullable=False, default=0),
    Column("rtp_journey_stage", Text, nullable=True),
    # ICP fit 0 to 100 under the workspace's fit model, and the fit x intent grade (e.g.
    # "A1"); NULL until the account is first scored.
    Column("rtp_fit_score", Float, nullable=True),
    Column("rtp_grade", String(8), nullable=True),
    Column("rtp_last_account_date", BigInteger, nullable=True),
    # The scoring model version that produced the stored scores (NULL: never scored).
    Column("score_model_version", Integer, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # The workspace change clock at the last change of anything the account returns.
    Column("changed_at", BigInteger, nullable=False),
)

Index("uq_accounts_workspace_id_domain", accounts.c.workspace_id, accounts.c.domain, unique=True)
Index(
    "uq_accounts_workspace_id_external_id",
    accounts.c.workspace_id,
    accounts.c.external_id,
    unique=True,
)
Index("ix_accounts_workspace_id_changed_at", accounts.c.workspace_id, accounts.c.changed_at)
# The dashboard's accounts table, ranked by score: read backwards from the top without
# sorting (accounts/ranking.py). Scores change on most scoring runs, so only this one
# index holds the score: every index with it costs a full rescore time (12 s at
# 1,000,000 accounts for this one; a (stage, score) index cost 25 s more).
Index(
    "ix_accounts_workspace_id_score",
    accounts.c.workspace_id,
    accounts.c.rtp_account_score,
    accounts.c.id,
)
# Accounts of one stage (a small stage is read from here and sorted) and the journey's
# counts per stage; it changes only when an account changes stage.
Index(
    "ix_accounts_workspace_id_stage",
    accounts.c.workspace_id,
    accounts.c.rtp_journey_stage,
    accounts.c.id,
)
# Dashboard search: names by their start, whatever the case.
Index("ix_accounts_workspace_id_lower_name", accounts.c.workspace_id, func.lower(accounts.c.name))
