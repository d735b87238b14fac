"""The signal store: signals, their daily rollup kept in step, rejects and ingest runs."""
