"""Fixtures of the ingest tests."""

from collections.abc import Iterator
from typing import Any

import pytest

from intently.ingest.resolvers import IpResolver


@pytest.fixture
def resolver_for(engine: Any) -> Iterator[Any]:
    """`resolver_for(*mmdb_paths)`: an IpResolver on the test's engine, closed afterwards."""
    made: list[IpResolver] = []

    def make(*paths: str) -> IpResolver:
        r = IpResolver(engine, list(paths))
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
