"""gazecrop on Dask: a worker plugin that loads the model once per worker, a partition function for bags, and
a helper running a whole job (``pip install "gazecrop[dask]"``).

In your own pipeline::

    import dask.bag as db
    from distributed import Client
    from gazecrop.dask import GazecropPlugin, crop_partition

    client = Client("tcp://scheduler:8786")
    client.register_plugin(GazecropPlugin({"aspects": ["16:9"], "write_crops": False}), name="gazecrop")
    records = db.from_sequence(paths, partition_size=16).map_partitions(crop_partition, "gazecrop")
    records.to_dataframe(meta=...).to_parquet(...)      # or gather the record dicts

Or the whole job (resumable, crops written; :func:`gazecrop.batch.run_job`)::

    from gazecrop.dask import run
    summary = run("photos/", "out/", aspects=["16:9"])                          # a LocalCluster
    summary = run("manifest.txt", "out/", aspects=["16:9"], address="tcp://scheduler:8786")

Inputs are local paths (read by the worker) or URIs read through fsspec (``s3://`` needs ``s3fs``, and so on).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from . import batch as _batch
from ._image import EncodedImage

__all__ = ["GazecropPlugin", "crop_partition", "local_cluster", "run", "PARTITION_SIZE"]

PARTITION_SIZE = 8
"""Inputs per bag partition (one Dask task) in :func:`run`."""

try:
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # the module stays importable for its docs; using it needs the dask extra
    _WorkerPlugin = object  # type: ignore[assignment,misc]


class GazecropPlugin(_WorkerPlugin):  # type: ignore[misc,valid-type]
    """Dask worker plugin: ``setup`` loads the model once per worker into a :class:`gazecrop.batch.Cropper`.

    Args:
        options: :class:`gazecrop.batch.BatchOptions` fields as a dict, or the object.
        crops_dir: folder for the crops (a file system every worker can write), when ``write_crops``.
    """

    def __init__(self, options: "dict | _batch.BatchOptions", crops_dir: Optional[str] = None) -> None:
        self.options = options.to_dict() if isinstance(options, _batch.BatchOptions) else dict(options)
        self.crops_dir = crops_dir
        self.cropper: Optional[_batch.Cropper] = None

    def setup(self, worker) -> None:
        self.cropper = _batch.Cropper(self.options, self.crops_dir)


def _input(source: str) -> "str | EncodedImage":
    if not _batch._is_uri(source) or source.startswith("file://"):
        return source[len("file://"):] if source.startswith("file://") else source
    import fsspec

    with fsspec.open(source, "rb") as f:
        return EncodedImage(f.read(), source)


def crop_partition(items: Iterable["str | Tuple[str, ...]"], plugin: str = "gazecrop") -> List[dict]:
    """Bag partition function: sources (paths or fsspec URIs), ``(source, relname)`` pairs or ``(source,
    relname, regions)`` (JSON text or "": :func:`gazecrop.batch.crop_records`) -> records
    (:data:`gazecrop.batch.COLUMNS`) with the model of the worker plugin registered as ``plugin``.

    Raises:
        RuntimeError: no such plugin on this worker.
    """
    from distributed import get_worker

    p = get_worker().plugins.get(plugin)
    if p is None or getattr(p, "cropper", None) is None:
        raise RuntimeError(f"no gazecrop worker plugin named {plugin!r}: client.register_plugin(GazecropPlugin("
                           f"...), name={plugin!r}) first")
    out: List[dict] = []
    for item in items:
        if isinstance(item, str):
            item = (item, os.path.basename(item))
        source, rel, regions = (tuple(item) + ("",))[:3]
        try:
            image = _input(source)
        except Exception as e:  # unreadable: one failure record
            out.append(p.cropper._failure(source, str(e) if str(e).startswith(source) else f"{source}: {e}"))
            continue
        out += p.cropper.run([image], [rel], [regions])
    return out


def local_cluster(n_workers: int):
    """A ``distributed.LocalCluster`` of ``n_workers`` single-threaded worker processes set up for cropping
    (what ``gazecrop-batch --engine dask`` starts without ``--address``): the workers' statistical profiler is
    off and glibc keeps its default malloc trimming. Measured on 2 cores, both Dask defaults together made
    each image about 1.7 times slower (the profiler samples every thread's stack every 10 ms; the
    ``MALLOC_TRIM_THRESHOLD_`` the nanny sets turns off glibc's adaptive mmap threshold, so every decoded image
    buffer is mapped and unmapped again); set the same on a cluster of your own (``benchmarks/RESULTS.md``).
    """
    import dask
    from distributed import LocalCluster

    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
               if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({"distributed.worker.profile.enabled": False,
                          "distributed.nanny.pre-spawn-environ": environ}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0")


def _dask_executor(tasks: List[Tuple[str, str, str]], options: _batch.BatchOptions, crops_dir: str,
                   jobs: Optional[int], address: Optional[str]) -> Iterator[List[dict]]:
    import dask.bag as db
    from distributed import Client, as_completed

    cluster = None
    if address:
        client = Client(address)
    else:
        cluster = local_cluster(jobs or (os.cpu_count() or 1))
        client = Client(cluster)
    try:
        name = "gazecrop-" + hashlib.sha256(json.dumps([options.to_dict(), crops_dir], sort_keys=True)
                                            .encode()).hexdigest()[:12]
        client.register_plugin(GazecropPlugin(options, crops_dir), name=name)
        bag = db.from_sequence(tasks, partition_size=PARTITION_SIZE)
        futures = client.compute(bag.map_partitions(crop_partition, name).to_delayed())
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            client.cancel(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run(inputs: "Union[str, Sequence[str]]", out: str, *, aspects: Optional[Sequence[str]] = None,
        address: Optional[str] = None, jobs: Optional[int] = None, **kwargs) -> _batch.JobSummary:
    """Run a whole job on Dask (:func:`gazecrop.batch.run_job` with ``engine="dask"``).

    Args:
        inputs: a folder, a manifest file or image paths / URIs (a list), as ``gazecrop-batch`` takes them.
        out: output folder every worker can write. aspects: aspect ratios (None: ``1:1`` unless ``sizes``).
        address: the scheduler (``"tcp://host:8786"``); None: a ``LocalCluster`` of ``jobs`` single-threaded
            worker processes (default the CPU count).
        kwargs: as :func:`gazecrop.ray.run`.
    """
    return _batch.run_engine("dask", inputs, out, aspects=aspects, address=address, jobs=jobs, **kwargs)
