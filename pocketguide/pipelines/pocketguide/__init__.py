"""The PocketGuide pipeline's own pieces, registered through the public decorators: the deterministic
critic (a generator mode), its checks, the content gates and the held-out prompt suite."""

from . import content_gates, critic, heldout  # noqa: F401
