"""What every External API request passes before its endpoint: rate limits, Idempotency-Key."""
