"""gazecrop._reaper: the processes a driver hands over die with it, however it ends (SIGKILL included), and
nothing else is touched: a clean close kills nothing, processes the driver had before are never adopted.
POSIX only; needs psutil (a dependency of the ``ray`` extra)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the reaper watches POSIX processes")
psutil = pytest.importorskip("psutil")

DRIVER = r"""
import json, os, signal, subprocess, sys, time
from gazecrop._reaper import ClusterReaper
before = subprocess.Popen(["sleep", "60"])            # the driver's own child, started before the cluster
r = ClusterReaper()
tree = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"])   # the "cluster": a root and its children
time.sleep(0.5)
adopted = r.adopt()
kids = [c.pid for c in __import__("psutil").Process(tree.pid).children()]
print(json.dumps({"before": before.pid, "root": tree.pid, "kids": kids, "adopted": adopted,
                  "watcher": r.pid}), flush=True)
time.sleep(0.5)                                        # the watcher records the tree
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
r.close()
"""


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _run_driver(how):
    with subprocess.Popen([sys.executable, "-c", DRIVER, how], stdout=subprocess.PIPE, text=True) as p:
        info = json.loads(p.stdout.readline())
        p.wait(timeout=60)
    return p, info


def _kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_a_sigkilled_driver_takes_its_cluster_with_it_and_nothing_else():
    p, info = _run_driver("kill")
    cluster = [info["root"]] + info["kids"]
    try:
        assert p.returncode == -signal.SIGKILL and info["adopted"] == 1 and len(info["kids"]) == 2
        t = time.monotonic()
        while any(_alive(x) for x in cluster) and time.monotonic() - t < 5:
            time.sleep(0.05)
        assert not [x for x in cluster if _alive(x)]  # the root and the children it started
        assert _alive(info["before"])  # the driver's earlier child is not the cluster's
        t = time.monotonic()
        while _alive(info["watcher"]) and time.monotonic() - t < 5:
            time.sleep(0.05)
        assert not _alive(info["watcher"])  # the watcher ends once it has reaped
    finally:
        _kill(cluster + [info["before"]])


def test_a_clean_close_kills_nothing():
    p, info = _run_driver("close")
    cluster = [info["root"]] + info["kids"]
    try:
        assert p.returncode == 0
        time.sleep(0.5)
        assert all(_alive(x) for x in cluster + [info["before"]])
        assert not _alive(info["watcher"])
    finally:
        _kill(cluster + [info["before"]])
