"""Generic built-in export formats. Importing this package registers them."""

from pocketguide.exporters import (
    hf,  # noqa: F401
    jsonl,  # noqa: F401
    parquet,  # noqa: F401
)
