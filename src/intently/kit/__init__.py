"""Shared building blocks: database, ids, domains, pagination, envelope, errors, validation."""
