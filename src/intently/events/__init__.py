"""Change events: the append-only log of what happened to accounts, per workspace."""
