"""The real ``gazecrop`` command line in a subprocess, for the fault tests (``tests/test_faults.py``).

    python tests/_cli_driver.py ARGS...      # exit status = gazecrop.cli.main(ARGS)

Environment:
- ``GAZECROP_TEST_FIXED=1``: the fixed-peak model of ``_crop_helpers`` instead of the bundled one (fast).
- ``GAZECROP_TEST_BLOCK=PATH``: the first write of an output takes half its bytes, creates PATH (so the test
  knows a temporary file exists) and then blocks until that temporary file is removed (which is what
  ``gazecrop._atomic.cancel_pending`` does on a signal), then fails. A ``SIGKILL`` leaves it behind.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gazecrop.api as api  # noqa: E402
from gazecrop import _atomic  # noqa: E402
from gazecrop.cli import main  # noqa: E402

if os.environ.get("GAZECROP_TEST_FIXED") == "1":
    from _crop_helpers import FixedModel, peak_grid

    _fixed = FixedModel(peak_grid(6, 8, 1, 6))
    api._model = lambda model: _fixed

_block = os.environ.get("GAZECROP_TEST_BLOCK")
if _block:
    _real = _atomic._write

    def _blocking_write(fd, data):
        _real(fd, data[: max(1, len(data) // 2)])
        with open(_block, "w"):
            pass
        while os.fstat(fd).st_nlink:  # until the temporary file is unlinked
            time.sleep(0.01)
        raise OSError("temporary file removed")

    _atomic._write = _blocking_write

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
