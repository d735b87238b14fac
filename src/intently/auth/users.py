"""Dashboard users: passwords (argon2id), roles, and sign-in sessions."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from intently.auth import repository as repo
from intently.auth.tables import users, web_sessions, workspaces
from intently.kit.db import read_tx, write_tx
from intently.kit.errors import BadRequest, Conflict, NotFound
from intently.kit.timefmt import US_PER_DAY, now_us

ROLES = ("admin", "member")
MIN_PASSWORD = 10
SESSION_DAYS = 14

_hasher = PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so an unknown email costs the same time
    as a wrong password and timing does not tell which emails exist. Made on first use: a
    hash costs ~0.2 s, which every command and process start would otherwise pay."""
    return _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class CreatedUser:
    workspace_id: int
    user_id: str
    email: str
    role: str
    password: str  # as given or generated; shown once by the caller
    generated: bool


@dataclass(frozen=True, slots=True)
class SessionUser:
    workspace_id: int
    workspace_name: str
    user_id: str
    email: str
    role: str
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    email: str
    role: str
    can_sign_in: bool
    created_at: int


def normalise_email(email: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    email = email.strip().lower()
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        raise BadRequest(f"email should be an email address; got '{email}'") from None
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"password should be at least {MIN_PASSWORD} characters long")
    if len(password) > 1024:
        raise BadRequest("password should be at most 1024 characters long")


def _role(role: str) -> str:
    if role not in ROLES:
        raise BadRequest(f"role should be one of {', '.join(ROLES)}; got '{role}'")
    return role


def create_user(
    engine: Engine,
    workspace_name: str,
    email: str,
    *,
    password: str | None = None,
    role: str = "member",
    create_workspace: bool = True,
) -> CreatedUser:
    """Give a user a password and a role, creating the workspace and user when missing.

    Without a password one is generated. An existing user (say, an API key holder) keeps
    its id and keys and gets the new password and role.
    """
    workspace_name = workspace_name.strip()
    if not workspace_name:
        raise BadRequest("workspace should not be empty")
    email = normalise_email(email)
    role = _role(role)
    generated = password is None
    password = password if password is not None else secrets.token_urlsafe(12)
    check_password(password)
    digest = _hasher.hash(password)
    for attempt in range(3):
        try:
            with write_tx(engine) as conn:
                ws = repo.workspace_id_by_name(conn, workspace_name)
                if ws is None:
                    if not create_workspace:
                        raise NotFound(f"Workspace '{workspace_name}' not found")
                    ws = repo.create_workspace(conn, workspace_name)
                uid = repo.user_id_by_email(conn, ws, email)
                if uid is None:
                    uid = repo.create_user(conn, ws, email)
                conn.execute(
                    update(users)
                    .where(users.c.workspace_id == ws, users.c.id == uid)
                    .values(password_hash=digest, role=role)
                )
                # A new password ends the sessions the old one started (it may be why
                # the password was reset).
                conn.execute(
                    delete(web_sessions).where(
                        web_sessions.c.workspace_id == ws, web_sessions.c.user_id == uid
                    )
                )
            return CreatedUser(ws, uid, email, role, password, generated)
        except IntegrityError:  # another process created the same workspace or user
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def invite_user(engine: Engine, workspace_id: int, email: str, role: str) -> CreatedUser:
    """A new user of this workspace with a generated password (shown once)."""
    email = normalise_email(email)
    role = _role(role)
    password = secrets.token_urlsafe(12)
    with write_tx(engine) as conn:
        uid = repo.user_id_by_email(conn, workspace_id, email)
        if uid is not None:
            found = conn.execute(
                select(users.c.password_hash).where(
                    users.c.workspace_id == workspace_id, users.c.id == uid
                )
            ).scalar()
            if found is not None:
                raise Conflict(f"A user with email '{email}' already exists")
        else:
            uid = repo.create_user(conn, workspace_id, email)
        conn.execute(
            update(users)
            .where(users.c.workspace_id == workspace_id, users.c.id == uid)
            .values(password_hash=_hasher.hash(password), role=role)
        )
    return CreatedUser(workspace_id, uid, email, role, password, True)


def list_users(engine: Engine, workspace_id: int) -> list[UserRow]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(
                users.c.id, users.c.email, users.c.role, users.c.password_hash, users.c.created_at
            )
            .where(users.c.workspace_id == workspace_id)
            .order_by(users.c.email)
        ).all()
    return [UserRow(r[0], r[1], r[2], r[3] is not None, r[4]) for r in rows]


def _admins(conn: Connection, workspace_id: int) -> int:
    return len(
        conn.execute(
            select(users.c.id).where(
                users.c.workspace_id == workspace_id,
                users.c.role == "admin",
                users.c.password_hash.is_not(None),
            )
        ).all()
    )


def set_role(engine: Engine, workspace_id: int, user_id: str, role: str) -> None:
    role = _role(role)
    with write_tx(engine) as conn:
        current = conn.execute(
            select(users.c.role).where(users.c.workspace_id == workspace_id, users.c.id == user_id)
        ).scalar()
        if current is None:
            raise NotFound(f"User '{user_id}' not found")
        if current == "admin" and role != "admin" and _admins(conn, workspace_id) <= 1:
            raise Conflict("The last admin cannot stop being an admin")
        conn.execute(
            update(users)
            .where(users.c.workspace_id == workspace_id, users.c.id == user_id)
            .values(role=role)
        )


def disable_sign_in(engine: Engine, workspace_id: int, user_id: str) -> None:
    """Remove a user's password and end their sessions (their API key is separate)."""
    with write_tx(engine) as conn:
        row = conn.execute(
            select(users.c.role, users.c.password_hash).where(
                users.c.workspace_id == workspace_id, users.c.id == user_id
            )
        ).first()
        if row is None:
            raise NotFound(f"User '{user_id}' not found")
        if row[0] == "admin" and row[1] is not None and _admins(conn, workspace_id) <= 1:
            raise Conflict("The last admin cannot be removed")
        conn.execute(
            update(users)
            .where(users.c.workspace_id == workspace_id, users.c.id == user_id)
            .values(password_hash=None)
        )
        conn.execute(
            delete(web_sessions).where(
                web_sessions.c.workspace_id == workspace_id, web_sessions.c.user_id == user_id
            )
        )


@dataclass(frozen=True, slots=True)
class LoginMatch:
    workspace_id: int
    workspace_name: str
    user_id: str


def verify_login(engine: Engine, email: str, password: str) -> list[LoginMatch]:
    """Every workspace where this email signs in with this password."""
    email = email.strip().lower()
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(users.c.workspace_id, workspaces.c.name, users.c.id, users.c.password_hash)
            .join(workspaces, workspaces.c.id == users.c.workspace_id)
            .where(users.c.email == email, users.c.password_hash.is_not(None))
            .order_by(workspaces.c.name)
        ).all()
    if not rows:
        _verify(_dummy_hash(), password)
        return []
    return [LoginMatch(r[0], r[1], r[2]) for r in rows if _verify(r[3], password)]


def _verify(digest: str, password: str) -> bool:
    try:
        return _hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(engine: Engine, workspace_id: int, user_id: str) -> str:
    """A new session; returns the cookie token (stored only as its hash)."""
    token = secrets.token_urlsafe(32)
    now = now_us()
    with write_tx(engine) as conn:
        # Expired sessions of this user go now, so the table does not grow without end.
        conn.execute(
            delete(web_sessions).where(
                web_sessions.c.workspace_id == workspace_id,
                web_sessions.c.user_id == user_id,
                web_sessions.c.expires_at < now,
            )
        )
        conn.execute(
            web_sessions.insert().values(
                workspace_id=workspace_id,
                id=_token_hash(token),
                user_id=user_id,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                expires_at=now + SESSION_DAYS * US_PER_DAY,
            )
        )
    return token


def session_user(engine: Engine, token: str | None) -> SessionUser | None:
    """The signed-in user for a cookie token, or None (unknown, expired, no password)."""
    if not token or len(token) > 128:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            select(
                web_sessions.c.workspace_id,
                workspaces.c.name,
                users.c.id,
                users.c.email,
                users.c.role,
                web_sessions.c.csrf_token,
                web_sessions.c.expires_at,
            )
            .join(
                users,
                (users.c.workspace_id == web_sessions.c.workspace_id)
                & (users.c.id == web_sessions.c.user_id),
            )
            .join(workspaces, workspaces.c.id == web_sessions.c.workspace_id)
            .where(web_sessions.c.id == _token_hash(token), users.c.password_hash.is_not(None))
        ).first()
    if row is None or row[6] < now_us():
        return None
    return SessionUser(row[0], row[1], row[2], row[3], row[4], row[5])


def end_session(engine: Engine, token: str | None) -> None:
    if not token:
        return
    with write_tx(engine) as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.id == _token_hash(token)))
