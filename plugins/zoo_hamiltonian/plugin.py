"""Hook implementations of the ``hamiltonian`` plugin."""

import zoo  # noqa: F401
