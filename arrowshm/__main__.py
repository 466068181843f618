"""``python -m arrowshm``: the ``arrowshm`` command."""

import sys

from ._cli import main

sys.exit(main())
