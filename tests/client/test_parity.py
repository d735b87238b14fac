"""`Client` and `AsyncClient` offer the same methods with the same parameters, so a program
moves from one to the other by adding `await` (and `async for`), nothing else."""

from __future__ import annotations

import inspect
from typing import Any

from intently.client import AsyncClient, Client

# The one name that differs on purpose: closing, named as httpx names it for each kind.
ASYNC_NAMES = {"aclose": "close"}


def methods(cls: type) -> dict[str, Any]:
    """The public methods of a client (and its constructor), by their sync name."""
    found = {
        ASYNC_NAMES.get(name, name): member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }
    return found | {"__init__": cls.__init__}


def parameters(method: Any) -> list[tuple[str, str, Any]]:
    """Each parameter's name, kind and default (annotations differ by nature: iterators)."""
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(method).parameters.values()]


def test_both_clients_offer_the_same_methods() -> None:
    sync, async_ = set(methods(Client)), set(methods(AsyncClient))
    assert (sorted(sync - async_), sorted(async_ - sync)) == ([], []), "(only sync, only async)"


def test_each_method_takes_the_same_parameters_in_both_clients() -> None:
    sync, async_ = methods(Client), methods(AsyncClient)
    differ = {
        name: (parameters(sync[name]), parameters(async_[name]))
        for name in sync.keys() & async_.keys()
        if parameters(sync[name]) != parameters(async_[name])
    }
    assert differ == {}
