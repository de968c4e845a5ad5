"""PocketGuide: a travel assistant that answers with one JSON envelope + typed payload. Load it with
`plugins: [pocketguide.pipelines.pocketguide]`: its envelope parsers, gates, the plan and dataset
operations, the deterministic critic (generator mode `pocketguide_critic`), the content gates built on
its checks, and the held-out prompt suite. Its contracts (schemas), keyword lists and plan spec are files
of the project."""

from pocketguide.pipelines.pocketguide import (
    content_gates,  # noqa: F401  (destination_named, no_placeholders, no_repeated_items, critic_checks)
    critic,  # noqa: F401  (generator pocketguide_critic)
    dataset,  # noqa: F401  (op dataset)
    gates,  # noqa: F401
    heldout,  # noqa: F401  (op heldout_prompts)
    parsers,  # noqa: F401
    plan,  # noqa: F401  (op plan)
)
