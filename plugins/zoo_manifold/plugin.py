"""Hook implementations of the ``manifold`` plugin."""

import zoo  # noqa: F401
