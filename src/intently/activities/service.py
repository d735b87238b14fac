"""Sales activities: create-only, calls and emails; contacts upserted by email."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from intently.accounts.repository import existing_ids
from intently.activities import repository as repo
from intently.activities.schemas import ActivitiesPush, ContactIn
from intently.kit.db import lock_workspace, read_tx, write_tx
from intently.kit.errors import NotFound
from intently.kit.ids import check_aid, new_id
from intently.kit.timefmt import format_ms, now_us, parse_iso8601

PROCESSED_TYPES = ("call", "email")

_CONTACT_MAP = {
    "externalContactId": "external_contact_id",
    "name": "name",
    "title": "title",
    "department": "department",
    "seniority": "seniority",
    "phone": "phone",
    "linkedinUrl": "linkedin_url",
}


def push_activities(engine: Engine, ws: int, body: ActivitiesPush) -> list[dict[str, Any]]:
    now = now_us()
    results: list[dict[str, Any]] = []
    with write_tx(engine) as conn:
        lock_workspace(conn, ws)
        taken = repo.existing_external_ids(
            conn, ws, (x.externalActivityId for x in body.activities)
        )
        contacts = repo.contacts_by_email(
            conn, ws, (c.email.lower() for x in body.activities for c in x.contacts)
        )
        new_contacts: dict[str, dict[str, Any]] = {}
        changed_contacts: dict[str, dict[str, Any]] = {}
        rows: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        for index, x in enumerate(body.activities):
            ext = x.externalActivityId
            result: dict[str, Any] = {"index": index, "externalActivityId": ext}
            kind = x.activityType.strip().lower()
            if kind not in PROCESSED_TYPES:
                result |= {
                    "status": "skipped",
                    "reason": f"activityType '{x.activityType}' is not processed; "
                    f"only {' and '.join(PROCESSED_TYPES)} activities are stored",
                }
            elif ext in taken:
                result |= {"status": "failed", "reason": f"Activity '{ext}' already exists"}
            else:
                taken.add(ext)
                aid = new_id()
                rows.append(
                    {
                        "workspace_id": ws,
                        "id": aid,
                        "external_activity_id": ext,
                        "activity_type": kind,
                        "occurred_at": parse_iso8601(x.occurredAt),
                        "domain": x.domain,
                        "account_name": x.accountName,
                        "subject": x.subject,
                        "owner_email": x.ownerEmail,
                        "owner_name": x.ownerName,
                        "owner_id": x.ownerId,
                        "from_name": x.from_.name if x.from_ else None,
                        "from_email": x.from_.email if x.from_ else None,
                        "call_title": x.callTitle,
                        "duration_minutes": x.durationMinutes,
                        "outcome": x.outcome,
                        "direction": x.direction,
                        "open_count": x.openCount,
                        "click_count": x.clickCount,
                        "reply_count": x.replyCount,
                        "created_at": now,
                    }
                )
                for cid in dict.fromkeys(
                    _upsert_contact(ws, c, contacts, new_contacts, changed_contacts, now)
                    for c in x.contacts
                ):
                    links.append({"workspace_id": ws, "activity_id": aid, "contact_id": cid})
                result["status"] = "created"
            results.append(result)
        repo.insert_contacts(conn, list(new_contacts.values()))
        repo.update_contacts(conn, ws, list(changed_contacts.values()), now)
        repo.insert_activities(conn, rows, links)
    return results


def _upsert_contact(
    ws: int,
    c: ContactIn,
    known: dict[str, dict[str, Any]],
    new: dict[str, dict[str, Any]],
    changed: dict[str, dict[str, Any]],
    now: int,
) -> str:
    email = c.email.lower()
    given = {
        col: getattr(c, prop) for prop, col in _CONTACT_MAP.items() if getattr(c, prop) is not None
    }
    row = known.get(email)
    if row is None:
        row = {
            "workspace_id": ws,
            "id": new_id(),
            "email": email,
            "created_at": now,
            "updated_at": now,
        }
        row |= {col: None for col in _CONTACT_MAP.values()} | given
        known[email] = new[email] = row
    elif any(row.get(k) != v for k, v in given.items()):
        row.update(given)
        if email not in new:
            changed[email] = row
    return str(row["id"])


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "externalActivityId": row["external_activity_id"],
        "activityType": row["activity_type"],
        "occurredAt": format_ms(row["occurred_at"]),
        "domain": row["domain"],
        "subject": row["subject"],
        "ownerEmail": row["owner_email"],
        "direction": row["direction"],
        "outcome": row["outcome"],
        "durationMinutes": row["duration_minutes"],
        "openCount": row["open_count"],
        "clickCount": row["click_count"],
        "replyCount": row["reply_count"],
        "contacts": row["contacts"],
    }


def activities_of_account(engine: Engine, ws: int, aid: str) -> list[dict[str, Any]]:
    check_aid(aid)
    with read_tx(engine) as conn:
        if not existing_ids(conn, ws, [aid]):
            raise NotFound(f"Account '{aid}' not found")
        return [public(r) for r in repo.activities_of_account(conn, ws, aid)]
