"""Website signals from web events: a workspace's website settings decide which page
views are high-value and which tracked events are form submissions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import translate
from functools import lru_cache
from typing import Any

from intently.ingest.matches import Match
from intently.signals.store import SignalIn

SOURCE = "website"
MAX_TOPIC_CHARS = 200


@lru_cache(maxsize=256)
def _compiled(
    patterns: tuple[tuple[str, str], ...],
) -> tuple[tuple[str, re.Pattern[str], bool], ...]:
    return tuple(
        (name, re.compile(translate(pattern.lower())), "://" in pattern)
        for name, pattern in patterns
    )


@dataclass(frozen=True, slots=True)
class SignalRules:
    """A workspace's website settings, ready to classify events."""

    high_value: tuple[tuple[str, re.Pattern[str], bool], ...]
    form_events: frozenset[str]
    ip_retention_days: int

    @classmethod
    def of(cls, cfg: dict[str, Any]) -> SignalRules:
        pages = tuple((p["name"], p["pattern"]) for p in cfg.get("highValuePages") or ())
        return cls(
            high_value=_compiled(pages),
            form_events=frozenset(e.strip().lower() for e in cfg.get("formEvents") or ()),
            ip_retention_days=int(cfg.get("ipRetentionDays", 7)),
        )

    def classify(
        self, etype: str, event: str | None, path: str | None, url: str | None
    ) -> tuple[str, str] | None:
        """(signal type, topic) of an event, or None when it makes no signal."""
        if etype == "page":
            lowered_path = (path or "").lower()
            lowered_url = (url or "").lower()
            for name, regex, full_url in self.high_value:
                target = lowered_url if full_url else lowered_path
                if target and regex.match(target):
                    return "high_value_page_view", name[:MAX_TOPIC_CHARS]
            return "page_view", page_topic(path)
        if etype == "track" and event and event.lower() in self.form_events:
            return "form_submit", event[:MAX_TOPIC_CHARS]
        return None


def page_topic(path: str | None) -> str:
    """The first path segment (`/docs/x` -> `docs`; `/` -> `home`); '' when no path is known."""
    if path is None:
        return ""
    first = path.split("?", 1)[0].split("#", 1)[0].strip("/").split("/", 1)[0]
    return first.lower()[:MAX_TOPIC_CHARS] or "home"


def signal_of(
    rules: SignalRules,
    m: Match,
    message_id: str,
    etype: str,
    event: str | None,
    path: str | None,
    url: str | None,
    occurred: int,
    *,
    claimed: bool = False,
) -> SignalIn | None:
    """The signal of an event resolved to `m`, or None when the event makes none.

    `claimed`: the account rests on the browser's word alone (a group or identify claim),
    which anyone holding the public write key can make; such an event counts as a plain
    page view of its page at most, never as a high-value page view or a form submitted.
    """
    kind = rules.classify(etype, event, path, url)
    if kind is None:
        return None
    if claimed and kind[0] != "page_view":
        kind = ("page_view", page_topic(path) or "home")
    return SignalIn(
        domain=m.domain,
        source=SOURCE,
        type=kind[0],
        occurred_at=occurred,
        natural_key="msg:" + message_id,
        topic=kind[1],
        provider=m.provider,
        match_method=m.method,
        confidence=m.confidence,
    )
