"""The console scripts ``gazecrop`` and ``gazecrop-batch``, started from a module that imports nothing heavy.

Python imports gazecrop, numpy and Pillow (about 0.3 s) before the command line can install its signal
handlers. A ``SIGINT`` (Ctrl-C) in that time would print a ``KeyboardInterrupt`` traceback; here it ends the
command quietly with status 130, as a ``SIGINT`` during the run does (:func:`gazecrop.cli.main`). This module
lives outside the ``gazecrop`` package because importing any module of a package first runs the package's
``__init__``, which imports the whole API.
"""

import importlib
import sys

__all__ = ["gazecrop", "gazecrop_batch"]

EXIT_SIGINT = 130


def _run(prog: str, module: str) -> int:
    try:
        main = importlib.import_module(module).main
        return main()  # installs its own handlers first; a SIGINT just before that lands below
    except KeyboardInterrupt:
        try:
            sys.stderr.write(f"\n{prog}: stopped by SIGINT\n")
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):  # no usable stderr: nowhere to say it
            pass
        return EXIT_SIGINT


def gazecrop() -> int:
    """Entry point of ``gazecrop`` (:func:`gazecrop.cli.main`)."""
    return _run("gazecrop", "gazecrop.cli")


def gazecrop_batch() -> int:
    """Entry point of ``gazecrop-batch`` (:func:`gazecrop.batch.main`)."""
    return _run("gazecrop-batch", "gazecrop.batch")
