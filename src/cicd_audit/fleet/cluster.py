"""Which Dask scheduler runs fleet work: ``local`` (a LocalCluster on this machine), ``sync``
(this process, one task at a time), or the address of a running scheduler (``tcp://host:8786``).

API::

    with dask_client("local") as client:    # client is None for "sync"
        frame.compute(**compute_kwargs(client))

``scheduler`` may also be a ``distributed.Client`` the caller already holds (the Python API only):
a dask-gateway cluster is reached through ``cluster.get_client()``, whose TLS credentials an
address string cannot carry. Such a client is used as it is and left open.

A LocalCluster listens on 127.0.0.1 only, without a dashboard, one
single-threaded worker process per core: the analyzers hold the GIL in
Python code, so processes, not threads, give parallelism.
"""

from __future__ import annotations

import contextlib
import logging
import os

from ..errors import UsageError

#: Seconds to wait for a remote scheduler before saying it cannot be reached.
CONNECT_TIMEOUT_S = 20


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None = None, memory_limit: str | None = None):
    scheduler = scheduler or "local"
    if not isinstance(scheduler, str):  # a Client the caller holds (and closes)
        yield scheduler
        return
    if scheduler == "sync":
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler == "local":
        n = workers or os.cpu_count() or 1
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, memory_limit=memory_limit or "auto",
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as e:
        raise UsageError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({e})") from None
    with client:
        yield client


def compute_kwargs(client) -> dict:
    return {"scheduler": "synchronous"} if client is None else {}
