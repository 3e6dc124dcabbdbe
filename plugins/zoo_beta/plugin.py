"""Hook implementations of the ``beta`` plugin."""

import zoo  # noqa: F401
