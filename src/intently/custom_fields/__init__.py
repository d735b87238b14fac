"""custom fields."""
