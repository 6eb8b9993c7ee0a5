"""Which Dask scheduler runs fleet work: ``local`` (a LocalCluster on this machine), ``sync``
(this process, one task at a time), or the address of a running scheduler (``tcp://host:8786``).

API::

    with dask_client("local") as client:    # client is None for "sync"
        frame.compute(**compute_kwargs(client))
    with local_cluster(workers=2) as cluster:    # the LocalCluster "local" runs on
        ...

``scheduler`` may also be a ``distributed.Client`` the caller already holds (the Python API only):
a dask-gateway cluster is reached through ``cluster.get_client()``, whose TLS credentials an
address string cannot carry. Such a client is used as it is and left open.

A LocalCluster listens on 127.0.0.1 only, without a dashboard, one
single-threaded worker process per core: the analyzers hold the GIL in
Python code, so processes, not threads, give parallelism.

Its workers do not profile (``WORKER_CONFIG``): a Dask worker samples the
stack of its running task every 10 ms and keeps each second's call tree for
the last 1,000 seconds (twice: all tasks, and per task name). The analyzers'
pandas stacks made those trees cost about 0.5 MB of RSS per second of work,
so a worker grew from 220 MB to about 1 GB over a whole store whatever the
sessions held (docs/fleet.md, "Memory per worker over a whole store"). The
profile only feeds the dashboard, which a LocalCluster here does not serve.
"""

from __future__ import annotations

import contextlib
import logging
import os

from ..errors import UsageError

#: Seconds to wait for a remote scheduler before saying it cannot be reached.
CONNECT_TIMEOUT_S = 20

#: Dask settings of the workers a LocalCluster starts (a Nanny hands its config to its worker).
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None = None, memory_limit: str | None = None):
    scheduler = scheduler or "local"
    if not isinstance(scheduler, str):  # a Client the caller holds (and closes)
        yield scheduler
        return
    if scheduler == "sync":
        yield None
        return
    from distributed import Client

    if scheduler == "local":
        with local_cluster(workers, memory_limit) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as e:
        raise UsageError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({e})") from None
    with client:
        yield client


@contextlib.contextmanager
def local_cluster(workers: int | None = None, memory_limit: str | None = None):
    """A LocalCluster of single-threaded worker processes on 127.0.0.1 (one per core by default)."""
    import dask
    from distributed import LocalCluster

    n = workers or os.cpu_count() or 1
    with dask.config.set(WORKER_CONFIG):  # read when the workers start, so only around their start
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, memory_limit=memory_limit or "auto",
                               silence_logs=logging.ERROR)
    with cluster:
        yield cluster


def compute_kwargs(client) -> dict:
    return {"scheduler": "synchronous"} if client is None else {}
