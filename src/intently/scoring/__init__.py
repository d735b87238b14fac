"""Account scoring: the versioned model, the set-based engine, runs, explanations."""
