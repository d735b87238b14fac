"""The product's vocabulary, written down once: built-in sources, their signal types, and
the score columns each source's sub-score is stored in (L0: imports nothing of Intently).

Everything that names a source, a built-in signal type or a score column reads it from
here: the scoring model, the signal store, the rule language, events, the dashboard's
columns and labels, CSV exports and the sync CLI.
"""

from __future__ import annotations

# The four sources Intently reads itself, in the order they are shown.
BUILTIN_SOURCES: tuple[str, ...] = ("website", "bombora", "g2", "linkedin")

# The signal types each built-in source records (a custom source may use any type name).
SIGNAL_TYPES: dict[str, tuple[str, ...]] = {
    "website": ("page_view", "high_value_page_view", "form_submit"),
    "bombora": ("surge",),
    "g2": ("pricing", "comparison", "alternatives", "category", "profile", "sponsored", "other"),
    "linkedin": ("ad_impression", "ad_click", "ad_engagement", "lead_form"),
}

# Which account column each built-in source's sub-score goes to (Recotap's names).
SCORE_COLUMNS: dict[str, str] = {
    "website": "rtp_website_intent_score",
    "bombora": "rtp_bombora_intent_score",
    "g2": "rtp_g2_intent_score",
    "linkedin": "rtp_advertising_activity_score",
}
ACCOUNT_SCORE = "rtp_account_score"
# The five stored scores: the account score first, then the sub-scores in source order.
ALL_SCORES: tuple[str, ...] = (ACCOUNT_SCORE, *SCORE_COLUMNS.values())

# How people read each score column (the dashboard's headings and rule builder).
SCORE_LABELS: dict[str, str] = {
    ACCOUNT_SCORE: "Account score",
    "rtp_website_intent_score": "Website intent score",
    "rtp_bombora_intent_score": "Bombora intent score",
    "rtp_g2_intent_score": "G2 intent score",
    "rtp_advertising_activity_score": "Advertising activity score",
}

# The largest value one signal may carry (POST /signals; importers stay within it too: a
# Bombora score is 0 to 100, a G2 event 1, a LinkedIn day's count far below). Values are
# never negative: a score adds up points per unit of value and caps only from above.
MAX_SIGNAL_VALUE = 1_000_000

# The company profile (extension fields of an account): API name -> accounts column.
# shortName was Recotap's own; the rest are Intently's (spec/api-v1.md "Account profile").
PROFILE_FIELDS: dict[str, str] = {
    "shortName": "short_name",
    "industry": "industry",
    "employeeCount": "employee_count",
    "annualRevenue": "annual_revenue",
    "country": "country",
    "city": "city",
    "logoUrl": "logo_url",
}
PROFILE_COLUMNS: tuple[str, ...] = tuple(PROFILE_FIELDS.values())
# ICP fit (0 to 100, the workspace's fit model) and the fit x intent grade, e.g. "A1".
FIT_SCORE = "rtp_fit_score"
GRADE = "rtp_grade"
COMPUTED_FIT: tuple[str, ...] = (FIT_SCORE, GRADE)
