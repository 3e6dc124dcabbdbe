"""Hook implementations of the ``vq`` plugin."""

import zoo  # noqa: F401
