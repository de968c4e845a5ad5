"""Built-in whole-dataset operations. Importing this package registers them."""

from . import base  # noqa: F401
from . import train  # noqa: F401
