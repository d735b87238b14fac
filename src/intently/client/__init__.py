"""The Python client of Intently's (and Recotap's) External API v1.

from intently.client import Client
with Client("http://127.0.0.1:8000/api/v1", "itly_...") as api:
    for account in api.iter_accounts():
        ...
    results = api.push_accounts([{"domain": "acme.com", "name": "Acme"}])
"""

from intently.client._async import AsyncClient
from intently.client._client import BulkResult, Client, Page, SyncState
from intently.client._errors import (
    AuthError,
    Conflict,
    ConnectionFailed,
    IntentlyError,
    NotFound,
    RateLimited,
    ServerError,
    ValidationError,
)

__all__ = [
    "AsyncClient",
    "AuthError",
    "BulkResult",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "IntentlyError",
    "NotFound",
    "Page",
    "RateLimited",
    "ServerError",
    "SyncState",
    "ValidationError",
]
