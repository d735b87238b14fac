"""The `intently` command line."""
