"""A local cluster dies with the process that started it.

``gazecrop-batch --engine ray|dask`` (and :func:`gazecrop.ray.run` / :func:`gazecrop.dask.run` without an
address) start a local cluster: Ray's GCS, raylet, agents and worker processes, or Dask's nannies and workers,
all descendants of the driver. When the driver is killed with ``SIGKILL`` it cannot shut them down, and they
outlive it: measured on Ray 2.60, the cropping actors for 2-5 s and Ray's dashboard and runtime-env agents for
as long as anyone waited (over 30 s); Dask 2026.8's workers for up to 2 s. A cropping worker still writing
while the job is rerun leaves a temporary file behind that nobody removes (``benchmarks/soak.py``'s batch
scenario found one).

:class:`ClusterReaper` starts a small watcher process (``python -m gazecrop._reaper``, in its own session so
that a signal to the driver's process group does not reach it) holding the read end of a pipe that only the
driver writes to. The driver hands it the cluster's root processes (its children started with the cluster);
every ``interval`` seconds the watcher records their descendants (pid and start time, through psutil, so a
reused pid is never mistaken for one of them). When the pipe reaches end of file (the driver is gone, however
it ended) it stops (``SIGSTOP``) every recorded process still alive and their children, so none can fork or
write any more, then kills them all (``SIGKILL``) and exits: within ``interval`` of the driver's death, before
a rerun can start. After the engine's own clean shutdown the driver closes the watcher, which kills nothing.
Clusters the user started (``--address``, or a Ray this process already joined) are never watched.

POSIX only (needs psutil, a dependency of the ``ray`` and ``dask`` extras); elsewhere :class:`ClusterReaper`
is a no-op.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from typing import Dict, List, Optional, Set, Tuple

__all__ = ["ClusterReaper"]

INTERVAL = 0.2
"""Seconds between two records of the cluster's processes (one started and orphaned within an interval would
be missed; neither engine does that: their processes stay in the roots' trees)."""


class ClusterReaper:
    """Context manager that makes the processes of a local cluster die with the current process (the driver).

    Open it just before starting the cluster and call :meth:`adopt` once the cluster runs: the driver's child
    processes that appeared in between are the cluster's roots (Ray's GCS, raylet and agents; Dask's nannies),
    and the watcher follows them and their descendants. :meth:`close` (or leaving the ``with`` block) after the
    engine's own shutdown ends the watcher without killing anything. If the driver dies first, however it
    ends, the watcher kills the roots and every descendant it saw or finds (module docstring). Processes the
    driver had before, or that are not its children, are never touched.

    Raises nothing: when the watcher cannot start (not POSIX, psutil missing) it does nothing.
    """

    def __init__(self, interval: float = INTERVAL) -> None:
        self._proc: Optional[subprocess.Popen] = None
        self._fd: Optional[int] = None
        self._before: Set[int] = set()
        if os.name != "posix":
            return
        try:
            import psutil
        except ImportError:
            return
        self._psutil = psutil
        self._before = {c.pid for c in psutil.Process().children()}
        r, w = os.pipe()  # not inheritable (PEP 446): the cluster's processes do not hold the write end
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "gazecrop._reaper", str(interval)], stdin=r,
                                          stdout=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        except OSError:
            os.close(w)
            return
        finally:
            os.close(r)
        self._fd = w

    @property
    def pid(self) -> Optional[int]:
        """The watcher's process id (None when it is not running)."""
        return None if self._proc is None else self._proc.pid

    def adopt(self) -> int:
        """Hand the watcher the driver's children started since this object was made (the cluster's roots);
        returns how many."""
        if self._fd is None:
            return 0
        psutil = self._psutil
        msg = []
        for c in psutil.Process().children():
            if c.pid in self._before or c.pid == self.pid:
                continue
            try:
                msg.append(f"+{c.pid}:{c.create_time()!r}\n")
            except psutil.Error:
                pass
            self._before.add(c.pid)
        try:
            os.write(self._fd, "".join(msg).encode())
        except OSError:
            pass
        return len(msg)

    def close(self) -> None:
        """End the watcher without killing anything (the cluster was shut down); idempotent."""
        if self._fd is not None:
            try:
                os.write(self._fd, b"close\n")
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a watcher stuck in the kernel
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> "ClusterReaper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _record(psutil, roots: Dict[int, float], seen: Dict[int, float]) -> None:
    """Add the live roots' descendants to ``seen`` (pid -> start time)."""
    for pid, started in list(roots.items()):
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - started) > 0.01:
                continue
            for c in p.children(recursive=True):
                seen.setdefault(c.pid, c.create_time())
        except psutil.Error:
            pass


def _reap(psutil, seen: Dict[int, float]) -> int:
    """SIGSTOP then SIGKILL every process of ``seen`` (pid -> start time) still alive with the same start time,
    and their descendants (found while they are stopped, so none escapes by forking or by its parent dying
    first). Returns how many were killed."""
    procs: Dict[int, "psutil.Process"] = {}
    todo: List[Tuple[int, Optional[float]]] = list(seen.items())
    while todo:
        pid, started = todo.pop()
        if pid in procs:
            continue
        try:
            p = psutil.Process(pid)
            if started is not None and abs(p.create_time() - started) > 0.01:
                continue  # the pid was reused
            p.send_signal(signal.SIGSTOP)
            procs[pid] = p
            todo += [(c.pid, None) for c in p.children()]
        except psutil.Error:
            pass
    for p in procs.values():
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(procs)


def _main(argv: List[str]) -> int:
    import psutil

    interval = float(argv[0])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is the driver's to handle
    roots: Dict[int, float] = {}
    seen: Dict[int, float] = {}
    buf = b""
    while True:
        ready, _, _ = select.select([0], [], [], interval)
        if ready:
            data = os.read(0, 4096)
            if not data:  # end of file: the driver is gone
                _record(psutil, roots, seen)
                _reap(psutil, {**seen, **roots})
                return 0
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line == b"close":  # a clean close: the engine shut its cluster down
                    return 0
                pid, started = line[1:].split(b":")
                roots[int(pid)] = float(started)
                seen[int(pid)] = float(started)
        _record(psutil, roots, seen)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
