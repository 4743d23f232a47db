"""``python -m ssimae ...``: the ``ssimae`` command (so ``torchrun -m ssimae train ...`` works)."""
import sys

from ssimae.cli import main

if __name__ == "__main__":
    sys.exit(main())
