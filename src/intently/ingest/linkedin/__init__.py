"""LinkedIn ads: the company engagement export, the ad analytics puller, and organization mapping.

LinkedIn reports ad activity per organization (`urn:li:organization:<id>`), not per
domain. An organization reaches an account's domain, first match wins, through:

1. the workspace's mapping table (`linkedin_orgs`, set by `intently linkedin map`):
   match method `mapping`, confidence 1.0;
2. an account whose `linkedinUrl` names the organization (`/company/<id>`, or its vanity
   name when the file or the API gives one): `linkedin_url`, 0.95;
3. the organization's website (a file column, or the API's organization lookup), kept in
   `linkedin_orgs` with origin `website`: `website`, 0.8.

An organization that matches nothing is rejected as `unknown_organization` with its URN
as the reject's `ref`; `reapply` turns those rejects into signals once it is mapped.

One row (or API element) carries up to four counts, each its own signal: impressions
(`ad_impression`), clicks (`ad_click`), engagements (`ad_engagement`) and lead form
submissions (`lead_form`). Natural key: `<urn>|<day>|<campaign>|<type>`; a row that covers
a period (Start Date .. End Date longer than one day) counts on its start date and its key
names the period, `<urn>|<start>/<end>|<campaign>|<type>`, so two periods that start on the
same day stay apart. LinkedIn revises recent days, so the same key with a new count is an
update (a count revised to 0 sets the stored signal to 0; a 0 never seen before stores
nothing).

Accounting: a run's `read` counts readings (one per count column of a usable row, one per
rejected row), so read = accepted + updated + duplicate + rejected + skipped still holds;
a zero count is skipped as `zero_count`, and an unknown organization's row that is already
open in the rejects (a re-import, the trailing window read again) as `already_rejected`.

The parts: `orgs.py` (organizations and their domains), `rows.py` (what a row says),
`apply.py` (signals or rejects; the file importer and the re-apply), `puller.py` (the API).
"""

from intently.ingest.linkedin.apply import (
    UNKNOWN,
    OpenRejects,
    Pending,
    apply_rows,
    import_file,
    merged_hints,
    reapply,
)
from intently.ingest.linkedin.orgs import (
    CONFIDENCE,
    InvalidOrganization,
    Match,
    OrgHints,
    OrgResolver,
    company_ref,
    map_org,
    normalise_org,
    org_id,
)
from intently.ingest.linkedin.puller import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    LinkedinApi,
    LinkedinApiError,
    PullConfig,
    pull,
)
from intently.ingest.linkedin.rows import (
    METRICS,
    OPTIONAL,
    PROVIDER,
    REQUIRED,
    SOURCE,
    TYPES,
    Row,
    RowError,
    parse_count,
    parse_day,
    parse_element,
    parse_file_row,
    parse_record,
)

__all__ = [
    "CONFIDENCE",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "METRICS",
    "OPTIONAL",
    "PROVIDER",
    "REQUIRED",
    "SOURCE",
    "TYPES",
    "UNKNOWN",
    "InvalidOrganization",
    "LinkedinApi",
    "LinkedinApiError",
    "Match",
    "OpenRejects",
    "OrgHints",
    "OrgResolver",
    "Pending",
    "PullConfig",
    "Row",
    "RowError",
    "apply_rows",
    "company_ref",
    "import_file",
    "map_org",
    "merged_hints",
    "normalise_org",
    "org_id",
    "parse_count",
    "parse_day",
    "parse_element",
    "parse_file_row",
    "parse_record",
    "pull",
    "reapply",
]
