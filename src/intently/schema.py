"""Every table, imported in one place so migrations and tests see the whole schema."""

from intently.accounts import tables as _accounts  # noqa: F401
from intently.activities import tables as _activities  # noqa: F401
from intently.auth import tables as _auth  # noqa: F401
from intently.custom_fields import tables as _custom_fields  # noqa: F401
from intently.deals import tables as _deals  # noqa: F401
from intently.events import tables as _events  # noqa: F401
from intently.fit import tables as _fit  # noqa: F401
from intently.gate import tables as _gate  # noqa: F401
from intently.ingest import tables as _ingest  # noqa: F401
from intently.kit import jobs as _jobs  # noqa: F401
from intently.kit import secrets as _secrets  # noqa: F401
from intently.kit.db import metadata
from intently.scoring import tables as _scoring  # noqa: F401
from intently.segments import tables as _segments  # noqa: F401
from intently.signals import tables as _signals  # noqa: F401
from intently.stages import tables as _stages  # noqa: F401
from intently.webhooks import tables as _webhooks  # noqa: F401

__all__ = ["metadata"]
