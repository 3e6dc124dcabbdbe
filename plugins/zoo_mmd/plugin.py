"""Hook implementations of the ``mmd`` plugin."""

import zoo  # noqa: F401
