"""gazecrop on Ray Data: a callable class for ``Dataset.map_batches`` and a helper running a whole job
(``pip install "gazecrop[ray]"``).

In your own pipeline (EXIF orientation is applied by gazecrop, so read bytes, not ``read_images``)::

    import ray
    from gazecrop.ray import Cropper, ACTOR_CPUS

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
    records = ds.map_batches(Cropper, fn_constructor_kwargs={"options": {"aspects": ["16:9", "1:1"],
                                                                         "write_crops": False}},
                             compute=ray.data.ActorPoolStrategy(size=8), num_cpus=ACTOR_CPUS,
                             batch_size=8, batch_format="numpy")
    records.write_parquet("s3://bucket/crops-table/")

Or the whole job (resumable, crops written, one table file per chunk; :func:`gazecrop.batch.run_job`)::

    from gazecrop.ray import run
    summary = run(["photos/"], "out/", aspects=["16:9"])               # a local Ray cluster
    summary = run("manifest.txt", "out/", aspects=["16:9"], address="auto")  # the cluster you are on

The job reads each input in a light task (``num_cpus`` :data:`READ_CPUS`), one failure record per input that
cannot be read (``read_binary_files`` would fail the whole dataset on one missing file), then crops in an
actor pool, one actor per CPU, each holding the model; actors ask for :data:`ACTOR_CPUS` (a little under 1)
so that read tasks can still be scheduled when the actors fill the cluster (ray-project/ray#44687). A local
cluster the job starts itself dies with the process even when it is killed with ``SIGKILL``
(:mod:`gazecrop._reaper`; Ray's own agents would otherwise outlive it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import batch as _batch
from ._reaper import ClusterReaper
from ._image import EncodedImage

__all__ = ["Cropper", "read_sources", "run", "READ_CPUS", "ACTOR_CPUS"]

READ_CPUS = 0.1
"""CPUs a read task asks for."""

ACTOR_CPUS = 0.9
"""CPUs a cropping actor asks for (under 1 so that read tasks fit beside a full actor pool)."""


def _read(source: str) -> bytes:
    if _batch._is_uri(source):
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(source)
        with fs.open_input_stream(path) as f:
            return f.read()
    with open(source, "rb") as f:
        return f.read()


def read_sources(batch: Dict[str, np.ndarray]):
    """Ray ``map_batches`` function: column ``path`` (local paths or URIs pyarrow's file systems read) ->
    ``pyarrow.Table`` with ``path``, ``bytes`` (the file) and ``read_error`` (null, or why it could not be read),
    plus ``relname`` and ``regions`` when given."""
    import pyarrow as pa

    data: List[Optional[bytes]] = []
    errors: List[Optional[str]] = []
    for p in batch["path"]:
        try:
            data.append(_read(str(p)))
            errors.append(None)
        except Exception as e:  # one unreadable input becomes one failure record
            data.append(None)
            errors.append(_batch._printable(str(e) if str(e).startswith(str(p)) else f"{p}: {e}"))
    cols = {"path": pa.array([str(p) for p in batch["path"]], pa.string()), "bytes": pa.array(data, pa.binary()),
            "read_error": pa.array(errors, pa.string())}
    for extra in ("relname", "regions"):
        if extra in batch:
            cols[extra] = pa.array([str(r) for r in batch[extra]], pa.string())
    return pa.table(cols)


class Cropper:
    """Callable class for ``ray.data.Dataset.map_batches``: the model is loaded once per actor.

    Args:
        options: :class:`gazecrop.batch.BatchOptions` fields as a dict (``aspects``, ``strategy``, ``name``,
            ``write_crops``, ``model``) or the object itself.
        crops_dir: folder the crops go to (a file system every actor can write), when ``write_crops``.

    Call with a batch (``batch_format="numpy"``) holding ``bytes`` (encoded files) and ``path`` (their names,
    as ``read_binary_files(include_paths=True)`` gives), optionally ``relname`` (crop names follow it; default
    the file name), ``regions`` (JSON text or "": :func:`gazecrop.batch.crop_records`) and ``read_error``; returns a ``pyarrow.Table`` of records
    (:data:`gazecrop.batch.COLUMNS`): one row per input per aspect, one row with ``error`` per failed input.
    """

    def __init__(self, options: "dict | _batch.BatchOptions", crops_dir: Optional[str] = None) -> None:
        self._cropper = _batch.Cropper(options, crops_dir)

    def __call__(self, batch: Dict[str, np.ndarray]):
        paths = [str(p) for p in batch["path"]]
        rel = [str(r) for r in batch["relname"]] if "relname" in batch else [os.path.basename(p) for p in paths]
        regions = [str(r) for r in batch["regions"]] if "regions" in batch else [""] * len(paths)
        errors = batch.get("read_error")
        records: List[dict] = []
        for i, p in enumerate(paths):
            err = None if errors is None else errors[i]
            if err is not None:
                records.append(self._cropper._failure(p, str(err)))
                continue
            records += self._cropper.run([EncodedImage(bytes(batch["bytes"][i]), p)], [rel[i]], [regions[i]])
        return _batch.records_to_arrow(records)


def _ray_executor(tasks: List[Tuple[str, str, str]], options: _batch.BatchOptions, crops_dir: str,
                  jobs: Optional[int], address: Optional[str]) -> Iterator[List[dict]]:
    import ray

    started = not ray.is_initialized()
    reaper = None
    if started:
        kw = {"address": address} if address else {"num_cpus": jobs or (os.cpu_count() or 1)}
        main = threading.current_thread() is threading.main_thread()
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        reaper = None if address else ClusterReaper()  # a local cluster dies with this process
        try:
            with reaper.marking() if reaper is not None else contextlib.nullcontext():
                ray.init(include_dashboard=False, logging_level="WARNING", configure_logging=True, **kw)
        except BaseException:
            if reaper is not None:
                reaper.kill()  # whatever the failed start left running
            raise
        for s, h in handlers.items():  # ray.init makes SIGTERM exit with status 15: keep the caller's rules
            if h is not None:
                signal.signal(s, h)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.enable_auto_log_stats = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, jobs if (jobs and address) else int(cpus / ACTOR_CPUS))
        actors = min(actors, cpus, len(tasks))
        # blocks of about 16 inputs: records reach the driver (table files, progress) as they finish
        blocks = max(min(len(tasks), 2 * actors), min(-(-len(tasks) // 16), 20000))
        ds = ray.data.from_items([{"path": s, "relname": r, "regions": g} for s, r, g in tasks],
                                 override_num_blocks=blocks)
        ds = ds.map_batches(read_sources, batch_size=8, num_cpus=READ_CPUS, batch_format="numpy")
        ds = ds.map_batches(Cropper, fn_constructor_kwargs={"options": options.to_dict(), "crops_dir": crops_dir},
                            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=ACTOR_CPUS, batch_size=4,
                            batch_format="numpy")
        for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield b.to_pylist()
    finally:
        if started:
            ray.shutdown()
        if reaper is not None:
            reaper.close()


def run(inputs: "Union[str, Sequence[str]]", out: str, *, aspects: Optional[Sequence[str]] = None,
        address: Optional[str] = None, jobs: Optional[int] = None, **kwargs) -> _batch.JobSummary:
    """Run a whole job on Ray (:func:`gazecrop.batch.run_job` with ``engine="ray"``).

    Args:
        inputs: a folder, a manifest file or image paths / URIs (a list), as ``gazecrop-batch`` takes them.
        out: output folder every worker can write. aspects: aspect ratios (None: ``1:1`` unless ``sizes``).
        address: a running cluster (``"auto"``, ``"ray://head:10001"``); None: the one this process already
            joined with ``ray.init``, else a local one with ``jobs`` CPUs (default the CPU count).
        jobs: local cluster CPUs, or the number of actors on ``address`` (default one per CPU).
        kwargs: ``sizes``, ``upscale``, ``strategy``, ``name``, ``write_crops``, ``model``
            (:class:`~gazecrop.batch.BatchOptions`) and ``chunk_size``, ``overwrite``, ``root``, ``progress``
            (:func:`~gazecrop.batch.run_job`).
    """
    return _batch.run_engine("ray", inputs, out, aspects=aspects, address=address, jobs=jobs, **kwargs)

