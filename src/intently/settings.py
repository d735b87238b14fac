"""Operator settings, read from the environment with the prefix INTENTLY_."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INTENTLY_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///intently.sqlite3",
        description="SQLAlchemy URL; a SQLite file in the working directory by default.",
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The largest dashboard form or file upload (vendor files, IP ranges, segment CSVs).
    web_max_body_bytes: int = Field(default=512 * 1024 * 1024, ge=64 * 1024)
    # Secret for signing pagination cursors. Empty: one is generated once and kept in the
    # database, so every process that shares the database shares the secret.
    secret_key: str = ""
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    db_pool_size: int = Field(default=10, ge=1)
    # Seals vendor credentials (Bombora, G2, LinkedIn) in the database. Any long random
    # string; keep it out of the database and its backups. Without it no credentials can
    # be stored or used.
    credentials_key: str = ""
    # MaxMind-format IP databases (GeoIP2 Domain, ISP or Enterprise layouts), comma
    # separated, searched in order after a workspace's own uploaded ranges.
    ip_databases: str = ""
    # How long the collector holds accepted events before writing them (the most a crash
    # can lose), and how many events it writes at once.
    collector_flush_ms: int = Field(default=500, ge=10, le=60_000)
    collector_batch: int = Field(default=2000, ge=1, le=100_000)
    # Outbound calls (webhooks, vendor pulls). Private, loopback and link-local targets
    # are refused (a URL a workspace sets must not reach into the operator's own
    # network), except the addresses and networks listed here, comma separated
    # ("10.1.2.0/24, 127.0.0.1"). webhook_allow_private=true allows every address.
    outbound_allow: str = ""
    webhook_allow_private: bool = False
    # The most one webhook request may take, from connecting to the answer's last byte.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=300)
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    # Retry n waits min(max, base * 2**(n-1)) seconds, less up to a quarter of jitter.
    webhook_backoff_base_s: float = Field(default=30.0, gt=0)
    webhook_backoff_max_s: float = Field(default=6 * 3600.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1, le=256)
    # Sends to one webhook at once (per dispatcher process): a slow or dead receiver holds
    # at most this many of the `webhook_concurrency` slots, the rest go to the others.
    webhook_concurrency_per_webhook: int = Field(default=4, ge=1, le=256)
    # Whether `intently serve` and `intently worker` run the webhook dispatcher.
    webhook_dispatch: bool = True

    # ---- production limits (issue 8) --------------------------------------------------
    # Rate limits: a token bucket per API key (and per collector write key), refilled at
    # `per_minute / 60` a second and holding at most `burst`. A workspace may set its own
    # (`intently workspaces rate-limit`). 0 per minute switches limiting off. Requests with
    # no valid key are limited per client address, which slows down key guessing.
    rate_limit_per_minute: int = Field(default=6000, ge=0)
    rate_limit_burst: int = Field(default=1000, ge=1)
    # A workspace's keys together draw from one more bucket, this many keys' worth of the
    # per-key figures, so minting a key per user does not multiply the workspace's rate.
    rate_limit_workspace_keys: int = Field(default=2, ge=1)
    rate_limit_collector_per_minute: int = Field(default=60_000, ge=0)
    rate_limit_collector_burst: int = Field(default=10_000, ge=1)
    rate_limit_anonymous_per_minute: int = Field(default=120, ge=0)
    rate_limit_anonymous_burst: int = Field(default=60, ge=1)
    # Idempotency-Key: how long a stored response is replayed, and how long a claim on a
    # key lasts unless renewed. A running request renews its claim every third of that, so
    # a process that died mid-request leaves a claim that lapses this soon.
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    idempotency_stale_s: int = Field(default=10, ge=2)
    # Request body limits, answered with the envelope (400 names the field, 413 the size).
    max_json_depth: int = Field(default=32, ge=2, le=1000)
    max_string_length: int = Field(default=10_000, ge=16)
    max_tags: int = Field(default=100, ge=1)
    max_tag_length: int = Field(default=100, ge=1)
    max_custom_fields: int = Field(default=200, ge=1)
    # Items per batch request; the defaults are the Recotap limits (spec section 6), and
    # a value above them is refused at start-up.
    max_batch_accounts: int = Field(default=100, ge=1, le=100)
    max_batch_deals: int = Field(default=100, ge=1, le=100)
    max_batch_activities: int = Field(default=50, ge=1, le=50)
    max_batch_mappings: int = Field(default=100, ge=1, le=100)
    # Operations: "json" logs one JSON object a line (with the request id), "text" plain.
    log_format: str = Field(default="json", pattern="^(json|text)$")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    # Whether GET /metrics answers (Prometheus text format; no key, keep it off the
    # public internet at the proxy).
    metrics: bool = True
    # Seconds `serve` waits for in-flight requests after SIGTERM before closing them.
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=3600)
    # An import or scoring run whose process has not stamped it for this long is marked
    # failed ("stopped: the process running it ended"); a live run stamps it every quarter.
    run_lease_s: float = Field(default=120.0, ge=1, le=24 * 3600)

    # ---- limits on imported files (issue 16; docs/deploy.md "Limits on uploaded files") ----
    # Vendor files and IP ranges, uploaded or imported from the command line, are read
    # as a stream; these bound what one file may cost. The most bytes a file may hold
    # once decompressed (a plain file: its size); a .gz file that inflates to more than
    # `import_max_compression_ratio` times the compressed bytes read so far is a
    # decompression bomb (vendor CSVs inflate 5 to 40 times, a run of all-zero rows up to
    # about 200; a bomb about 1,000); the longest row, in characters.
    import_max_decompressed_bytes: int = Field(default=16 * 1024**3, ge=1024)
    import_max_compression_ratio: float = Field(default=500.0, ge=2)
    import_max_line_chars: int = Field(default=1024 * 1024, ge=256, le=1024 * 1024)

    # ---- rule previews (issue 16; docs/deploy.md "Limits on rules") -------------------
    # A segment preview over the API or the dashboard stops after this many seconds (422:
    # narrow the rule). At most so many previews, dry runs and backtests run at once per
    # workspace and in all, per process; one more is answered 429 with Retry-After, so one
    # workspace cannot hold every server thread.
    preview_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    preview_concurrency_per_workspace: int = Field(default=2, ge=1, le=1000)
    preview_concurrency: int = Field(default=4, ge=1, le=1000)

    # ---- the collector's trust model (issue 16; docs/deploy.md) ------------------------
    # The collector's buckets count events, not requests: rate_limit_collector_* above are
    # events per write key, and these are events per client address within a workspace
    # (one visitor, or one server that forwards every visitor: raise it for such a
    # sender, or set 0). Failed collector requests count against rate_limit_anonymous_*.
    rate_limit_collector_address_per_minute: int = Field(default=6000, ge=0)
    rate_limit_collector_address_burst: int = Field(default=2000, ge=1)
    # Identity claimed by the browser (group traits, an identify email): how many distinct
    # domains one anonymous id, and one client address, may claim in the window. Claims
    # beyond are kept on the event but resolve nothing.
    collector_claims_per_visitor: int = Field(default=2, ge=0)
    collector_claims_per_address: int = Field(default=10, ge=0)
    collector_claims_window_s: int = Field(default=24 * 3600, ge=60)
    # Servers that forward visitors' events (a backend SDK, a Segment or RudderStack
    # relay), comma-separated addresses or networks: from them `context.ip` is believed.
    # From anyone else a `context.ip` other than the connection's address is a claim.
    collector_trusted_senders: str = ""

    @field_validator("outbound_allow", "collector_trusted_senders")
    @classmethod
    def _networks(cls, value: str, info: ValidationInfo) -> str:
        """A comma-separated list of IP addresses or networks; a bad entry stops start-up
        naming the variable and the entry."""
        for part in (p.strip() for p in value.split(",")):
            if part:
                try:
                    ipaddress.ip_network(part, strict=False)
                except ValueError:
                    raise ValueError(
                        f"INTENTLY_{(info.field_name or '').upper()}: '{part}' is not an IP "
                        "address or network (like 10.1.2.0/24 or 127.0.0.1)"
                    ) from None
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
