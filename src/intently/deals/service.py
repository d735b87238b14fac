"""Deals: upsert by externalDealId; associations link to accounts by externalId, then domain."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from intently.accounts.repository import existing_ids
from intently.deals import repository as repo
from intently.deals.schemas import DealsPush
from intently.kit.db import lock_workspace, read_tx, write_tx
from intently.kit.errors import NotFound
from intently.kit.ids import check_aid, new_id
from intently.kit.timefmt import format_ms, now_us, parse_iso8601


def push_deals(engine: Engine, ws: int, body: DealsPush) -> list[dict[str, Any]]:
    now = now_us()
    results: list[dict[str, Any]] = []
    with write_tx(engine) as conn:
        lock_workspace(conn, ws)
        existing = repo.ids_by_external(conn, ws, (x.externalDealId for x in body.deals))
        inserts: dict[str, dict[str, Any]] = {}
        updates: dict[str, dict[str, Any]] = {}
        assoc: dict[str, list[dict[str, Any]]] = {}
        for index, deal in enumerate(body.deals):
            ext = deal.externalDealId
            row = {
                "name": deal.name.strip(),
                "amount": deal.amount,
                "stage_id": deal.stageId,
                "stage_label": deal.stageLabel,
                "pipeline_id": deal.pipelineId,
                "pipeline_label": deal.pipelineLabel,
                "start_date": parse_iso8601(deal.startDate) if deal.startDate else None,
                "closed_date": parse_iso8601(deal.closedDate) if deal.closedDate else None,
                "owner_name": deal.ownerName,
                "owner_email": deal.ownerEmail,
                "owner_id": deal.ownerId,
                "currency_code": deal.dealCurrencyCode,
            }
            did = existing.get(ext)
            if did is None:
                did = new_id()
                existing[ext] = did
                inserts[did] = row | {
                    "workspace_id": ws,
                    "id": did,
                    "external_deal_id": ext,
                    "created_at": now,
                    "updated_at": now,
                }
                status = "created"
            else:
                if did in inserts:
                    inserts[did].update(row)
                else:
                    updates[did] = row | {"id": did}
                status = "updated"
            if deal.associatedAccounts is not None:
                assoc[did] = [
                    {
                        "workspace_id": ws,
                        "deal_id": did,
                        "position": pos,
                        "external_id": x.externalId or None,
                        "domain": x.domain,
                        "name": x.name,
                    }
                    for pos, x in enumerate(deal.associatedAccounts)
                ]
            results.append({"index": index, "externalDealId": ext, "status": status})
        repo.insert_many(conn, list(inserts.values()))
        repo.update_many(conn, ws, list(updates.values()), now)
        repo.replace_associations(
            conn, ws, list(assoc), [r for rows in assoc.values() for r in rows]
        )
    return results


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "externalDealId": row["external_deal_id"],
        "name": row["name"],
        "amount": row["amount"],
        "stageId": row["stage_id"],
        "stageLabel": row["stage_label"],
        "pipelineId": row["pipeline_id"],
        "pipelineLabel": row["pipeline_label"],
        "startDate": format_ms(row["start_date"]) if row["start_date"] is not None else None,
        "closedDate": format_ms(row["closed_date"]) if row["closed_date"] is not None else None,
        "ownerName": row["owner_name"],
        "ownerEmail": row["owner_email"],
        "ownerId": row["owner_id"],
        "dealCurrencyCode": row["currency_code"],
    }


def deals_of_account(engine: Engine, ws: int, aid: str) -> list[dict[str, Any]]:
    check_aid(aid)
    with read_tx(engine) as conn:
        if not existing_ids(conn, ws, [aid]):
            raise NotFound(f"Account '{aid}' not found")
        return [public(r) for r in repo.deals_of_account(conn, ws, aid)]
