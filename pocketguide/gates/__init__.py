"""Generic built-in gates. Importing this package registers them."""

from pocketguide.gates import (
    basic,  # noqa: F401
    lines,  # noqa: F401
)
