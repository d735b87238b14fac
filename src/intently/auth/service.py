"""API keys: one active key per user, shown once, stored as a SHA-256 hash (spec section 2)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from intently.auth import repository as repo
from intently.auth.users import normalise_email
from intently.kit.db import read_tx, write_tx
from intently.kit.errors import BadRequest, Conflict, NotFound, Unauthorized
from intently.kit.ids import is_id

KEY_PREFIX = "itly_"


@dataclass(frozen=True, slots=True)
class Caller:
    workspace_id: int
    key_id: str = ""
    # The workspace's own rate limit (requests a minute, burst); None: the operator's.
    rate_limit: tuple[int, int] | None = None


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key(engine: Engine, workspace_name: str, email: str) -> str:
    """Create the workspace and user when missing, revoke the user's old key, return a new one."""
    workspace_name = workspace_name.strip()
    email = email.strip().lower()
    if not workspace_name:
        raise BadRequest("workspace name should not be empty")
    if "@" not in email:
        raise BadRequest(f"email '{email}' is not an email address")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    for attempt in range(3):
        try:
            with write_tx(engine) as conn:
                ws = repo.workspace_id_by_name(conn, workspace_name)
                if ws is None:
                    ws = repo.create_workspace(conn, workspace_name)
                _issue(conn, ws, email, key)
            return key
        except IntegrityError:  # another process created the same workspace or user
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _issue(conn: Connection, ws: int, email: str, key: str) -> str:
    """Store `key` as the user's one active key (creating the user); returns its prefix."""
    uid = repo.user_id_by_email(conn, ws, email)
    if uid is None:
        uid = repo.create_user(conn, ws, email)
    # Without the lock, two issues at once each revoke the keys they see and each insert
    # theirs: two active keys. Locked, the second (its statements read afresh after the
    # wait, READ COMMITTED) revokes the first's key.
    repo.lock_user(conn, ws, uid)
    repo.revoke_user_keys(conn, ws, uid)
    prefix = key[: len(KEY_PREFIX) + 6]
    repo.insert_key(conn, ws, uid, hash_key(key), prefix)
    return prefix


@dataclass(frozen=True, slots=True)
class IssuedKey:
    email: str
    prefix: str
    key: str = field(repr=False)  # shown once by the caller, never stored or logged


def issue_key(engine: Engine, workspace_id: int, email: str) -> IssuedKey:
    """A new key for a user of this workspace (created when missing, without sign-in);
    the user's previous key is revoked."""
    email = normalise_email(email)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    for attempt in range(3):
        try:
            with write_tx(engine) as conn:
                if repo.api_access(conn, workspace_id) is None:
                    raise NotFound(f"Workspace '{workspace_id}' not found")
                prefix = _issue(conn, workspace_id, email, key)
            return IssuedKey(email, prefix, key)
        except IntegrityError:  # another request created the same user
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class KeyRow:
    key_id: str
    user_id: str
    email: str
    prefix: str
    created_at: int
    revoked_at: int | None


def list_keys(
    engine: Engine, workspace_id: int, *, before: str | None = None, limit: int = 50
) -> tuple[list[KeyRow], str | None]:
    """A page of the workspace's keys, newest first, and the `before` of the next page."""
    if before is not None and not is_id(before):
        raise BadRequest(f"before should be a key id; got '{before}'")
    with read_tx(engine) as conn:
        rows = repo.keys_page(conn, workspace_id, before=before, limit=limit)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        KeyRow(r["id"], r["user_id"], r["email"], r["prefix"], r["created_at"], r["revoked_at"])
        for r in rows
    ]
    return items, (items[-1].key_id if more and items else None)


def revoke_key(engine: Engine, workspace_id: int, key_id: str) -> None:
    """Revoke one key of this workspace; its next request is refused."""
    if not is_id(key_id):
        raise NotFound(f"API key '{key_id}' not found")
    with write_tx(engine) as conn:
        found = repo.key_by_id(conn, workspace_id, key_id)
        if found is None:
            raise NotFound(f"API key '{key_id}' not found")
        if found["revoked_at"] is not None:
            raise Conflict(f"API key {found['prefix']}… is already revoked")
        repo.revoke_key(conn, workspace_id, key_id)


def api_access(engine: Engine, workspace_id: int) -> bool:
    with read_tx(engine) as conn:
        found = repo.api_access(conn, workspace_id)
    if found is None:
        raise NotFound(f"Workspace '{workspace_id}' not found")
    return found


def set_api_access_for(engine: Engine, workspace_id: int, enabled: bool) -> None:
    """set_api_access by workspace id (the dashboard knows the id, not a name to look up)."""
    with write_tx(engine) as conn:
        if repo.api_access(conn, workspace_id) is None:
            raise NotFound(f"Workspace '{workspace_id}' not found")
        repo.set_api_access(conn, workspace_id, enabled)


def set_api_access(engine: Engine, workspace_name: str, enabled: bool) -> None:
    with write_tx(engine) as conn:
        ws = repo.workspace_id_by_name(conn, workspace_name)
        if ws is None:
            raise NotFound(f"Workspace '{workspace_name}' not found")
        repo.set_api_access(conn, ws, enabled)


def set_rate_limit(
    engine: Engine, workspace_name: str, per_minute: int | None, burst: int | None
) -> None:
    """A workspace's own API rate limit (per_minute 0: no limit), or None for the default."""
    if per_minute is not None and per_minute < 0:
        raise BadRequest(f"per_minute must be 0 or more, got {per_minute}")
    if burst is not None and burst < 1:
        raise BadRequest(f"burst must be 1 or more, got {burst}")
    with write_tx(engine) as conn:
        ws = repo.workspace_id_by_name(conn, workspace_name)
        if ws is None:
            raise NotFound(f"Workspace '{workspace_name}' not found")
        repo.set_rate_limit(conn, ws, per_minute, burst if per_minute is not None else None)


def authenticate(engine: Engine, key: str | None) -> Caller:
    if not key:
        raise Unauthorized("X-Api-Key header is required")
    digest = hash_key(key)
    # One statement, so no explicit transaction: a revoked key fails on its next request.
    with engine.connect() as conn:
        found = repo.key_lookup(conn, digest)
    if (
        found is None
        or not hmac.compare_digest(found.key_hash, digest)
        or found.revoked_at is not None
    ):
        raise Unauthorized("Invalid API key")
    if not found.api_access:
        raise Unauthorized("API access is not enabled for this workspace")
    own = None
    if found.rate_limit_per_minute is not None:
        own = (found.rate_limit_per_minute, found.rate_limit_burst or found.rate_limit_per_minute)
    return Caller(workspace_id=found.workspace_id, key_id=found.key_id, rate_limit=own)
