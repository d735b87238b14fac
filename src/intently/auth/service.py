"""API keys: one active key per user, shown once, stored as a SHA-256 hash (spec section 2)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from intently.auth import repository as repo
from intently.kit.db import write_tx
from intently.kit.errors import BadRequest, NotFound, Unauthorized

KEY_PREFIX = "itly_"


@dataclass(frozen=True, slots=True)
class Caller:
    workspace_id: int


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
                uid = repo.user_id_by_email(conn, ws, email)
                if uid is None:
                    uid = repo.create_user(conn, ws, email)
                repo.revoke_user_keys(conn, ws, uid)
                repo.insert_key(conn, ws, uid, hash_key(key), key[: len(KEY_PREFIX) + 6])
            return key
        except IntegrityError:  # another process created the same workspace or user
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def set_api_access(engine: Engine, workspace_name: str, enabled: bool) -> None:
    with write_tx(engine) as conn:
        ws = repo.workspace_id_by_name(conn, workspace_name)
        if ws is None:
            raise NotFound(f"Workspace '{workspace_name}' not found")
        repo.set_api_access(conn, ws, enabled)


def authenticate(engine: Engine, key: str | None) -> Caller:
    if not key:
        raise Unauthorized("X-Api-Key header is required")
    digest = hash_key(key)
    # One statement, so no explicit transaction: a revoked key fails on its next request.
    with engine.connect() as conn:
        found = repo.key_lookup(conn, digest)
    if found is None or not hmac.compare_digest(found[1], digest) or found[3] is not None:
        raise Unauthorized("Invalid API key")
    if not found[2]:
        raise Unauthorized("API access is not enabled for this workspace")
    return Caller(workspace_id=found[0])
