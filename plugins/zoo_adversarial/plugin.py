"""Hook implementations of the ``adversarial`` plugin."""

import zoo  # noqa: F401
