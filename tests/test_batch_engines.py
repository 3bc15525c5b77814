"""Batch jobs on Ray Data (``ray.init(num_cpus=2)``) and Dask (``LocalCluster``), started here: over a
folder of a few dozen images with bad files, exactly the single-process API's boxes, one failure record per
bad file (a manifest entry that cannot be read included), the same table and crops as the local engine, and
identical output after an interrupted run is resumed. Needs the ``ray`` / ``dask`` extras (CI installs
them; without them these tests skip)."""

import os

import pytest

from gazecrop import batch
from gazecrop.batch import BatchOptions, run_job

from _batch_helpers import (ASPECTS, BAD, boxes, expected, interrupt_then_resume, make_corpus, read_table,
                            same_output, temporaries)

OPTS = BatchOptions(aspects=ASPECTS)

# the engines' own deprecation notices (about settings gazecrop does not touch) are not failures here, nor Ray
# Data's own log files that its logging handler leaves open (a ResourceWarning when the garbage collector finds
# one, raised wherever that happens to be: seen once in CI, under load, inside ray.data._internal.logging)
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
              pytest.mark.filterwarnings("ignore::FutureWarning:ray.*"),
              pytest.mark.filterwarnings("ignore:unclosed file <_io.TextIOWrapper name='[^']*/ray/:ResourceWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:distributed.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:dask.*")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """30 images + 4 bad files, plus a manifest naming them and one missing file; the local engine's output
    of the same job (the reference)."""
    root = str(tmp_path_factory.mktemp("corpus"))
    good = make_corpus(root, n=30)
    sources = batch.expand_inputs([root]).sources
    sources.append(os.path.join(root, "b", "missing.jpg"))
    manifest = os.path.join(root, "..", "manifest.txt")
    with open(manifest, "w") as f:
        f.write("\n".join(sources) + "\n")
    ref = str(tmp_path_factory.mktemp("ref"))
    run_job(sources, ref, OPTS, engine="local", jobs=2, chunk_size=8, root=root)
    return root, sources, expected(good), ref


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs for this module (gazecrop's helpers join the one already started)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def dask_cluster():
    """A Dask LocalCluster of 2 single-threaded worker processes for this module."""
    pytest.importorskip("dask")
    pytest.importorskip("distributed")
    pytest.importorskip("pyarrow")
    from gazecrop.dask import local_cluster

    with local_cluster(2) as cluster:
        yield cluster


def _check(out, corpus):
    root, sources, want, ref = corpus
    rows = read_table(out)
    assert boxes(rows) == want  # exactly the single-process API's boxes and points
    failed = [r["source"] for r in rows if r["error"] is not None]
    assert sorted(failed) == sorted([os.path.join(root, b) for b in BAD] + [sources[-1]])  # one record each
    assert same_output(out, ref)  # crops byte for byte and table rows as the local engine's
    assert temporaries(out) == []


def test_ray_job_matches_the_api_and_resumes_identically(corpus, ray_cluster, tmp_path, monkeypatch):
    root, sources, _, _ = corpus
    s = interrupt_then_resume("ray", sources, str(tmp_path / "out"), root, monkeypatch)
    assert s.startup_s > 0 and len(s.failed) == len(BAD) + 1
    _check(str(tmp_path / "out"), corpus)


def test_ray_callable_class_on_read_binary_files(corpus, ray_cluster):
    from gazecrop.ray import ACTOR_CPUS, Cropper

    ray = ray_cluster
    root, sources, want, _ = corpus
    good = sorted(want)[:6]
    ds = ray.data.read_binary_files(good, include_paths=True)
    out = ds.map_batches(Cropper, fn_constructor_kwargs={"options": {"aspects": list(ASPECTS), "write_crops": False}},
                         compute=ray.data.ActorPoolStrategy(size=1), num_cpus=ACTOR_CPUS, batch_size=4,
                         batch_format="numpy")
    rows = out.take_all()
    got = boxes([{**r, "source": "/" + r["source"].lstrip("/")} for r in rows])
    assert got == {p: want[p] for p in good}


def test_dask_job_matches_the_api_and_resumes_identically(corpus, dask_cluster, tmp_path, monkeypatch):
    root, sources, _, _ = corpus
    s = interrupt_then_resume("dask", sources, str(tmp_path / "out"), root, monkeypatch,
                              address=dask_cluster.scheduler_address)
    assert s.startup_s > 0 and len(s.failed) == len(BAD) + 1
    _check(str(tmp_path / "out"), corpus)


def test_dask_plugin_and_partition_function(corpus):
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    import dask.bag as db

    from gazecrop.dask import GazecropPlugin, crop_partition

    root, sources, want, _ = corpus
    good = sorted(want)[:6]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        with pytest.raises(RuntimeError, match="no gazecrop worker plugin"):
            client.compute(db.from_sequence(good[:1]).map_partitions(crop_partition, "nope")).result()
        client.register_plugin(GazecropPlugin({"aspects": list(ASPECTS), "write_crops": False}), name="gc")
        rows = db.from_sequence(good + [sources[-1]], partition_size=3).map_partitions(
            crop_partition, "gc").compute()
    assert boxes(rows) == {p: want[p] for p in good}
    assert rows[-1]["source"] == sources[-1] and "No such file or directory" in rows[-1]["error"]


def test_cli_engines_from_a_manifest(corpus, ray_cluster, dask_cluster, tmp_path):
    root, sources, want, ref = corpus
    manifest = os.path.join(root, "..", "manifest.txt")
    for engine, address in (("dask", [dask_cluster.scheduler_address]), ("ray", [])):  # ray: the one joined
        out = str(tmp_path / engine)
        rc = batch.main([manifest, "-a", ASPECTS[0], "-a", ASPECTS[1], "--out", out, "--engine", engine,
                         "--chunk-size", "8", "--root", root, "--no-progress"]
                        + (["--address", address[0]] if address else []))
        assert rc == 1  # the bad files
        assert same_output(out, ref)


def test_thumbnail_sizes_on_both_engines_match_the_local_engine(corpus, ray_cluster, dask_cluster, tmp_path):
    root, sources, _, _ = corpus
    # 16 inputs, a missing file among them (its size columns are null); fewer than 16 gives Ray's read step a
    # single output block, and Ray warns that the second actor gets no work
    few = sources[:15] + [sources[-1]]
    opts = BatchOptions(aspects=("1:1",), sizes=("64x36", "9x30"), name="{stem}-{size}{ext}")
    ref = str(tmp_path / "local")
    run_job(few, ref, opts, chunk_size=4, root=root)
    rows = read_table(ref)
    assert [(r["size_width"], r["size_height"]) for r in rows if r["error"] is None][:3] == [
        (None, None), (64, 36), (9, 30)]
    for engine, address in (("ray", None), ("dask", dask_cluster.scheduler_address)):
        out = str(tmp_path / engine)
        run_job(few, out, opts, engine=engine, address=address, chunk_size=4, root=root)
        assert same_output(out, ref), engine


def test_sigterm_stops_a_dask_job_cleanly_and_a_rerun_finishes_it(corpus, tmp_path):
    pytest.importorskip("distributed")
    import signal
    import subprocess
    import sys
    import time

    root, sources, _, ref = corpus
    manifest = os.path.join(root, "..", "manifest.txt")
    out = str(tmp_path / "out")
    args = [sys.executable, "-m", "gazecrop.batch", manifest, "-a", ASPECTS[0], "-a", ASPECTS[1], "--chunk-size",
            "2", "--root", root, "--no-progress", "--out", out]
    proc = subprocess.Popen(args + ["--engine", "dask", "-j", "2"], stderr=subprocess.PIPE, text=True)
    table = os.path.join(out, "table")
    t = time.monotonic()
    while not (os.path.isdir(table) and os.listdir(table)) and proc.poll() is None and time.monotonic() - t < 120:
        time.sleep(0.002)  # the first table files: one Dask partition (8 inputs) is done, 4 more to go
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert len(os.listdir(table)) < 18  # stopped before the end
    again = subprocess.run(args, capture_output=True, text=True)  # finished by the local engine: same key
    assert again.returncode == 1 and "already done" in again.stderr  # 1: the bad files
    assert temporaries(out) == []
    rows = read_table(out)
    assert boxes(rows) == corpus[2] and sum(r["error"] is not None for r in rows) == len(BAD) + 1


def test_per_image_regions_on_both_engines_match_the_local_engine(corpus, ray_cluster, dask_cluster, tmp_path):
    root, sources, want, _ = corpus
    few = sorted(want)[:16]
    regions = {few[0]: {"keep": [[0, 0, 30, 30]], "boost": [], "focal": None}, few[1]: {"focal": [5, 5]},
               few[2]: {"boost": [[[0, 0, 40, 40], 3.0]]}, few[3]: {"keep": [[0, 0, 5000, 5]]}}  # too wide: fails
    opts = BatchOptions(aspects=("1:1",), sizes=("32x32",), fit="auto")
    ref = str(tmp_path / "local")
    run_job(few, ref, opts, chunk_size=4, root=root, regions=regions)
    rows = read_table(ref)
    assert rows[0]["kept"] == 1.0 and (rows[2]["point_x"], rows[2]["point_y"]) == (5, 5)
    assert "is not inside the" in rows[6]["error"] and all(r["error"] is None for r in rows[7:])
    for engine, address in (("ray", None), ("dask", dask_cluster.scheduler_address)):
        out = str(tmp_path / engine)
        run_job(few, out, opts, engine=engine, address=address, chunk_size=4, root=root, regions=regions)
        assert same_output(out, ref), engine


@pytest.mark.parametrize("engine", ["ray", "dask"])
def test_a_sigkilled_driver_leaves_no_local_cluster_behind(corpus, tmp_path, engine):
    # benchmarks/soak.py found Ray's local cluster outliving a SIGKILLed gazecrop-batch (its dashboard and
    # runtime-env agents for over 30 s, its cropping actors for seconds: a rerun met their temporary files);
    # gazecrop._reaper takes it down. Dask's workers already died with their driver (a regression guard).
    pytest.importorskip("distributed" if engine == "dask" else "ray")
    pytest.importorskip("pyarrow")
    psutil = pytest.importorskip("psutil")
    import signal
    import subprocess
    import sys
    import time

    root = corpus[0]
    out = str(tmp_path / "out")
    args = [sys.executable, "-m", "gazecrop.batch", root, "-a", ASPECTS[0], "--chunk-size", "1", "--no-progress",
            "--out", out, "--engine", engine, "-j", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    session = proc.pid

    def alive():
        found = []
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == session and p.status() != psutil.STATUS_ZOMBIE and p.pid != proc.pid:
                    found.append(p)
            except (psutil.Error, OSError):
                pass
        return found

    def names(procs):
        found = []
        for p in procs:
            try:
                found.append(" ".join(p.cmdline())[:60])
            except psutil.Error:
                pass
        return found

    try:
        table = os.path.join(out, "table")
        t = time.monotonic()
        while not (os.path.isdir(table) and os.listdir(table)) and proc.poll() is None and time.monotonic() - t < 180:
            time.sleep(0.01)
        assert proc.poll() is None, "the job ended before the first table file: nothing to test"
        assert alive(), "no cluster process found"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t = time.monotonic()
        while alive() and time.monotonic() - t < 5:
            time.sleep(0.05)
        left = names(alive())
        assert not left, f"outlived the driver by 5 s: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in alive():
            try:
                p.kill()
            except psutil.Error:
                pass
