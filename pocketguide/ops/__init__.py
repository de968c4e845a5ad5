"""Generic whole-dataset operations. Importing this package registers them."""

from pocketguide.ops import (
    eval_suite,  # noqa: F401
    qa,  # noqa: F401
    sft,  # noqa: F401
    split,  # noqa: F401
)
