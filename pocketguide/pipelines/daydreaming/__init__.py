"""DayDreaming: a creative-writing study (concept combinations → drafts → essays → judges → scores).
Load it with `plugins: [pocketguide.pipelines.daydreaming]`: cohorts and template catalogs (a load
hook), its parsers, the concept_combos and score_report operations, and the `gens` export."""

from pocketguide.pipelines.daydreaming import (
    cohort,  # noqa: F401  (load hook: cohorts, catalogs)
    concepts,  # noqa: F401  (op concept_combos)
    gens,  # noqa: F401  (export format gens)
    parsers,  # noqa: F401
    report_op,  # noqa: F401  (op score_report)
)
