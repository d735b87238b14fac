"""Which database a test run uses: the one this variable names (tests/conftest.py sets a
fresh SQLite file when it is unset)."""

DB_ENV = "INTENTLY_TEST_DATABASE_URL"
