"""Built-in whole-dataset operations. Importing this package registers them."""

from . import base  # noqa: F401
from . import plan, dataset  # noqa: F401
from . import qa  # noqa: F401
from . import split  # noqa: F401
from . import sft  # noqa: F401
from . import eval_suite  # noqa: F401
from . import concepts  # noqa: F401
from . import report  # noqa: F401
from . import train  # noqa: F401
