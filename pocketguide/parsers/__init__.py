"""Generic built-in parsers. Importing this package registers them."""

from pocketguide.parsers import basic  # noqa: F401
