"""Hook implementations of the ``samplers`` plugin."""

import zoo  # noqa: F401
