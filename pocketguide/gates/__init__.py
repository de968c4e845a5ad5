"""Built-in gates. Importing this package registers them."""

from . import basic  # noqa: F401
from . import pocketguide  # noqa: F401
from . import lines  # noqa: F401
