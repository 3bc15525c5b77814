"""``python -m gazecrop``: the ``gazecrop`` command line (:mod:`gazecrop.cli`)."""

import sys

from .cli import main

sys.exit(main())
