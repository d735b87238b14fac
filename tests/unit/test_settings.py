"""Settings that hold lists of networks: a bad entry stops start-up naming its variable.

Two such lists (the outbound allow-list and the collector's trusted senders) share one
validator; each must keep its check (two validators of one name once dropped the first)."""

import pytest

from intently.settings import Settings


@pytest.mark.parametrize("field", ["outbound_allow", "collector_trusted_senders"])
def test_a_bad_network_is_refused_naming_the_variable_and_the_entry(field: str) -> None:
    with pytest.raises(ValueError, match=f"INTENTLY_{field.upper()}: 'ten' is not an IP"):
        Settings(**{field: "10.0.0.0/8, ten"})


@pytest.mark.parametrize("field", ["outbound_allow", "collector_trusted_senders"])
def test_addresses_and_networks_are_taken(field: str) -> None:
    s = Settings(**{field: "10.1.0.0/16, 127.0.0.1, ::1"})
    assert getattr(s, field) == "10.1.0.0/16, 127.0.0.1, ::1"
