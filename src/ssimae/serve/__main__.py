"""``python -m ssimae.serve EXPORT``: ``ssimae serve`` for machines without torch."""
import sys

from ssimae.serve.command import main

sys.exit(main())
