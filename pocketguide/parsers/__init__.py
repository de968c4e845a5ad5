"""Built-in parsers. Importing this package registers them."""

from . import basic  # noqa: F401
from . import envelope  # noqa: F401
from . import daydreaming  # noqa: F401
