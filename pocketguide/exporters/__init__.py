"""Built-in export formats. Importing this package registers them."""

from . import jsonl  # noqa: F401
from . import parquet  # noqa: F401
from . import hf  # noqa: F401
from . import gens  # noqa: F401
