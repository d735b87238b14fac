"""Accounts > Company profile: a CSV or XLSX file's columns mapped to profile fields.

Two steps on one form: choosing a file posts it to /columns, which answers the mapping
selects (one per column of the file, in order) into the same form; Apply posts the file
again with the mapping. Nothing is kept on the server between the steps, so any process behind a
load balancer can answer either. The file travels twice; profile files are small.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.responses import Response

from intently.accounts import upload
from intently.catalog import PROFILE_FIELDS
from intently.ingest.files import FileLimits
from intently.kit.errors import BadRequest, IntentlyError
from intently.web.feedback import error_text
from intently.web.session import Viewer, Writer, engine_of
from intently.web.templating import render
from intently.web.uploads import saved_upload

router = APIRouter()

LABELS = {
    "domain": "Domain (required)",
    "shortName": "Short name",
    "industry": "Industry",
    "employeeCount": "Employees",
    "annualRevenue": "Annual revenue (USD)",
    "country": "Country (ISO code or name)",
    "city": "City",
    "logoUrl": "Logo URL",
}
assert set(LABELS) == {"domain", *PROFILE_FIELDS}


def _limits(request: Request) -> FileLimits:
    return FileLimits.of(request.app.state.intently.settings)


@router.get("/accounts/profile-upload")
def profile_upload_page(request: Request, user: Viewer) -> Response:
    return render(request, "accounts/profile_upload.html", user, nav="accounts", labels=LABELS)


@router.post("/accounts/profile-upload/columns")
def profile_upload_columns(
    request: Request, user: Writer, file: Annotated[UploadFile | None, File()] = None
) -> Response:
    """The file's columns, each with a field to map it to (guessed from its name)."""
    try:
        with saved_upload(file) as path:
            header = upload.header_of(path, _limits(request))
    except IntentlyError as exc:
        return _error(request, user, exc)
    return render(
        request,
        "accounts/_profile_mapping.html",
        user,
        columns=list(zip(header, upload.guess(header), strict=True)),
        labels=LABELS,
    )


@router.post("/accounts/profile-upload/apply")
def profile_upload_apply(
    request: Request,
    user: Writer,
    file: Annotated[UploadFile | None, File()] = None,
    column: Annotated[list[str] | None, Form(max_length=1000)] = None,
    target: Annotated[list[str] | None, Form(max_length=40)] = None,
) -> Response:
    """Apply the file under the mapping: `column` names each column of the file in order,
    `target` the field chosen for it ("" to leave it out)."""
    header = list(column or [])
    targets = list(target or [])
    if len(targets) != len(header):
        return _error(request, user, BadRequest("mapping: upload the file again to map it"))
    mapping = {i: t for i, t in enumerate(targets) if t}
    try:
        with saved_upload(file) as path:
            report = upload.apply_file(
                engine_of(request), user.workspace_id, path, mapping,
                limits=_limits(request), expected_header=header,
            )  # fmt: skip
    except IntentlyError as exc:
        return _error(request, user, exc)
    return render(
        request, "accounts/_profile_report.html", user, report=report.as_dict(),
        labels=LABELS, filename=file.filename if file is not None else "",
    )  # fmt: skip


def _error(request: Request, user: Any, exc: IntentlyError) -> Response:
    return render(
        request, "accounts/_profile_error.html", user, error=error_text(exc),
        status_code=exc.status,
    )  # fmt: skip
