"""Hook implementations of the ``perceptual`` plugin."""

import zoo  # noqa: F401
