"""The rule language shared by journey stages and dynamic segments (spec "Rule language").

`parse_rule` validates a document, `evaluate` answers for one account in memory (with
`load_facts`), `compile_rule` / `matching_ids` answer for every account in one query;
the two agree (tests/rules/test_equivalence.py). Semantics: `intently.rules.language`.
"""

from intently.rules.facts import (
    AccountFacts,
    ActivityFact,
    DealFact,
    SignalDay,
    custom_field_types,
    load_facts,
)
from intently.rules.memory import evaluate
from intently.rules.parse import parse_rule, size_problems
from intently.rules.sql import compile_rule, matching_ids
from intently.rules.terms import (
    DEFAULT_DEAL_STAGES,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_LIST,
    MAX_RELATED_CONDITIONS,
    MAX_VALUES,
    Context,
    DealStageMap,
    SurgeParams,
    deal_status,
    is_surging,
)
from intently.rules.tree import (
    ActivityLeaf,
    All,
    AnyOf,
    DealLeaf,
    FieldLeaf,
    Not,
    NumCmp,
    Rule,
    SignalLeaf,
    Size,
    SurgeLeaf,
    leaves,
    rule_doc,
    size_of,
)

__all__ = [
    "DEFAULT_DEAL_STAGES",
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_LIST",
    "MAX_RELATED_CONDITIONS",
    "MAX_VALUES",
    "AccountFacts",
    "ActivityFact",
    "ActivityLeaf",
    "All",
    "AnyOf",
    "Context",
    "DealFact",
    "DealLeaf",
    "DealStageMap",
    "FieldLeaf",
    "Not",
    "NumCmp",
    "Rule",
    "SignalDay",
    "SignalLeaf",
    "Size",
    "SurgeLeaf",
    "SurgeParams",
    "compile_rule",
    "custom_field_types",
    "deal_status",
    "evaluate",
    "is_surging",
    "leaves",
    "load_facts",
    "matching_ids",
    "parse_rule",
    "rule_doc",
    "size_of",
    "size_problems",
]
