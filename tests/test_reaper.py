"""gazecrop._reaper: the processes a driver starts while its reaper is open die with it, however it ends (SIGKILL
included): children, their descendants, orphans whose parent died first (recorded or marked), processes started
just before the kill; and nothing else is touched: a clean close kills nothing, processes the driver had before
are never taken. The watcher starts even from a folder holding a module that would shadow psutil, and a child
forked without exec does not keep it from seeing the driver's end. POSIX only; needs psutil (a dependency of the
``ray`` extra)."""

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
how = sys.argv[1]
before = subprocess.Popen(["sleep", "60"])            # the driver's own child, started before the cluster
r = ClusterReaper()
info = {"before": before.pid, "watcher": r.pid, "active": r.active}
if how == "orphan":
    # a root that starts a marked child and exits at once (Ray's raylet dies with the driver and its newest
    # workers go to init before any record): only the mark can find the child
    with r.marking():
        tree = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!"], stdout=subprocess.PIPE, text=True)
    info.update(root=tree.pid, kids=[int(tree.stdout.readline())])
    tree.wait()
    print(json.dumps(info), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
# the "cluster": a root and two children; with "kill", one child drops the mark (as Ray's agents do) and the
# root exits after the watcher has recorded them: only the record finds that orphan
cmd = "env -u GAZECROP_CLUSTER_MARK sleep 60 & sleep 60 & sleep 0.9" if how == "kill" else "sleep 60 & sleep 60 & wait"
with r.marking():
    tree = subprocess.Popen(["sh", "-c", cmd])
time.sleep(0.3)
info.update(root=tree.pid, kids=[c.pid for c in __import__("psutil").Process(tree.pid).children()])
if how == "fork":  # a child forked without exec must not hold the pipe open
    if os.fork() == 0:
        time.sleep(20)
        os._exit(0)
print(json.dumps(info), flush=True)
if how == "early":  # killed before any record could have seen the tree
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(1.5)                                        # the watcher records the tree
if how in ("kill", "fork"):
    os.kill(os.getpid(), signal.SIGKILL)
r.close()
"""


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _run_driver(how, tmp_path):
    # run as a script from another folder (as the gazecrop-batch console script runs: the current folder is not
    # on sys.path), in a folder with a psutil.py that would shadow the real one if it were
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "driver.py").write_text(DRIVER)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "psutil.py").write_text("raise ImportError('a module that shadows psutil')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with subprocess.Popen([sys.executable, str(tmp_path / "bin" / "driver.py"), how], stdout=subprocess.PIPE,
                          text=True, cwd=tmp_path / "work", env=env) as p:
        info = json.loads(p.stdout.readline())
        p.wait(timeout=60)
    return p, info


def _kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _gone_within(pids, seconds=5.0):
    t = time.monotonic()
    while any(_alive(x) for x in pids) and time.monotonic() - t < seconds:
        time.sleep(0.05)
    return [x for x in pids if _alive(x)]


@pytest.mark.parametrize("how", ["kill", "early", "fork"])
def test_a_sigkilled_driver_takes_its_cluster_with_it_and_nothing_else(how, tmp_path):
    p, info = _run_driver(how, tmp_path)
    cluster = [info["root"]] + info["kids"]
    try:
        assert p.returncode == -signal.SIGKILL and info["active"] and len(info["kids"]) >= 2
        assert not _gone_within(cluster)  # the root and the children it started
        assert _alive(info["before"])  # the driver's earlier child is not the cluster's
        assert not _gone_within([info["watcher"]])  # the watcher ends once it has reaped
    finally:
        _kill(cluster + [info["before"]])


def test_an_orphan_started_just_before_the_kill_dies_too(tmp_path):
    p, info = _run_driver("orphan", tmp_path)
    try:
        assert p.returncode == -signal.SIGKILL and info["active"]
        assert not _alive(info["root"])  # its parent exited before any record: only its mark finds it
        assert not _gone_within(info["kids"])
        assert _alive(info["before"])
    finally:
        _kill(info["kids"] + [info["before"]])


def test_a_clean_close_kills_nothing(tmp_path):
    p, info = _run_driver("close", tmp_path)
    cluster = [info["root"]] + info["kids"]
    try:
        assert p.returncode == 0 and info["active"]
        time.sleep(0.5)
        assert all(_alive(x) for x in cluster + [info["before"]])
        assert not _alive(info["watcher"])
    finally:
        _kill(cluster + [info["before"]])
