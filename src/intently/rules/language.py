"""The rule language of stages and dynamic segments: its tree, validation and parameters.

A rule is a JSON tree (spec "Rule language"). `parse_rule` checks a document and names
every problem with its path; `rule_doc` gives the canonical document back. The meaning
of each leaf is defined once here and implemented twice, in `memory.py` (one account)
and `sql.py` (every account in one query); the equivalence test holds them together.

The language's code is in three modules, all of it importable from here: `terms`
(fields, operators, limits, parameters), `tree` (the nodes, and back to JSON) and
`parse`; this module holds what the words mean.

Semantics shared by both evaluators:
- Windows are whole UTC days ending with as_of's day: `window_days` N covers the days
  (as_of_day - N, as_of_day], so a signal exactly N days old is out, one N - 1 days old
  is in. Activities and deals carry instants, so their windows are (as_of - N days, as_of]
  and nothing after as_of counts (a backtest sees only the past).
- A missing value (null column, absent custom field key, JSON null, or a stored value not
  of the field's type) satisfies no positive operator. Each negative operator is exactly
  the negation of its positive one (`ne` = not `eq`, `not_in` = not `in`, `not_contains`
  = not `contains`, `missing` = not `exists`), so a missing value satisfies `ne`,
  `not_in`, `not_contains` and `missing`.
- Text compares by code points (binary collation), case-sensitively, in Python, SQLite
  and PostgreSQL alike; text has no ordering operators, so no collation ever matters.
- Dates compare as calendar days. `createdAt` is its UTC day; a date custom field is the
  `YYYY-MM-DD` it starts with as written (a value in another ISO 8601 form, such as
  `20260105`, counts as missing); a rule's date value is its date as written.
- Numbers compare as IEEE doubles everywhere. A `"measure": "value"` signal sum adds
  doubles, so it is exact (and the same everywhere) for integers and binary fractions;
  sums of other decimals may differ in the last bit between engines.
- Surge (per source, optionally one type): `recent` = signal count over the last
  `recent_days` days, `baseline` = count over the `baseline_days` days before those;
  see `is_surging`.
- Deals count when created (start date, else first push) at or before as_of; their
  status is `deal_status(stage_label)` with today's label (the CRM keeps no history).
- A custom field's type is its definition's when `parse_rule` is given the workspace's
  definitions; otherwise it is inferred from the operator and value
  (`parse._infer_kind`).
"""

from __future__ import annotations

from intently.kit.timefmt import US_PER_DAY
from intently.rules.parse import parse_rule
from intently.rules.terms import (
    ACTIVITY_TYPES,
    ALL_OPS,
    BUILTIN_FIELDS,
    COMPARE,
    CUSTOM_PREFIX,
    DEAL_STATUSES,
    DEFAULT_DEAL_STAGES,
    LABEL_KINDS,
    MAX_DEPTH,
    MAX_LIST,
    MAX_WINDOW_DAYS,
    MEASURES,
    NEGATIVE,
    NUMERIC_OPS,
    OPS_BY_KIND,
    Context,
    DealStageMap,
    SurgeParams,
    ascii_lower,
    date_text,
    day_of_date,
    deal_status,
    is_surging,
    stored_date,
)
from intently.rules.tree import (
    LEAF_KEYS,
    ActivityLeaf,
    All,
    AnyOf,
    DealLeaf,
    FieldLeaf,
    Not,
    NumCmp,
    Rule,
    SignalLeaf,
    SurgeLeaf,
    leaves,
    rule_doc,
)

__all__ = [
    "ACTIVITY_TYPES",
    "ALL_OPS",
    "BUILTIN_FIELDS",
    "COMPARE",
    "CUSTOM_PREFIX",
    "DEAL_STATUSES",
    "DEFAULT_DEAL_STAGES",
    "LABEL_KINDS",
    "LEAF_KEYS",
    "MAX_DEPTH",
    "MAX_LIST",
    "MAX_WINDOW_DAYS",
    "MEASURES",
    "NEGATIVE",
    "NUMERIC_OPS",
    "OPS_BY_KIND",
    "US_PER_DAY",
    "ActivityLeaf",
    "All",
    "AnyOf",
    "Context",
    "DealLeaf",
    "DealStageMap",
    "FieldLeaf",
    "Not",
    "NumCmp",
    "Rule",
    "SignalLeaf",
    "SurgeLeaf",
    "SurgeParams",
    "ascii_lower",
    "date_text",
    "day_of_date",
    "deal_status",
    "is_surging",
    "leaves",
    "parse_rule",
    "rule_doc",
    "stored_date",
]
