import sys

from nudge.tools.cli import main

sys.exit(main())
