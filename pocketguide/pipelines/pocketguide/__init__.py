"""PocketGuide: a travel assistant that answers with one JSON envelope + typed payload. Load it with
`plugins: [pocketguide.pipelines.pocketguide]`: its envelope parsers, gates, and the plan and
dataset operations. Its contracts (schemas), keyword lists and plan spec are files of the project."""

from pocketguide.pipelines.pocketguide import (
    dataset,  # noqa: F401  (op dataset)
    gates,  # noqa: F401
    parsers,  # noqa: F401
    plan,  # noqa: F401  (op plan)
)
