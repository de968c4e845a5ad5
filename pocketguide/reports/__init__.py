"""Reading finished stages: the HTML run report (collect → html) and score aggregation (scores)."""
