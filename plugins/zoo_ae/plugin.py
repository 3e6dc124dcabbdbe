"""Hook implementations of the ``ae`` plugin."""

import zoo  # noqa: F401
