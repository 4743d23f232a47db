import sys

from ssimae.cli.main import main

sys.exit(main())
