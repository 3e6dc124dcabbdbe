"""The ``zoo`` command line's commands, one module per group of commands (see :mod:`zoo.cli`)."""
