"""`python -m monitor`: the `radwatch` command line (monitor.cli), for a checkout without the
installed console script."""

import sys

from monitor.cli import main

sys.exit(main())
