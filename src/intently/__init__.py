"""Intently: self-hostable account-based marketing with a Recotap-compatible External API."""

__version__ = "0.1.0"
