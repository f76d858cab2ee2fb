"""``python -m dcf`` is the ``dcf`` command."""

import sys

from dcf.cli import main

sys.exit(main())
