"""Reports built from finished stages (score aggregation)."""
