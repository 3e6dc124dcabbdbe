"""``python -m zoo``: the CLI (torchrun runs it as ``torchrun ... -m zoo train MODEL``)."""

from zoo.cli import main

main()
