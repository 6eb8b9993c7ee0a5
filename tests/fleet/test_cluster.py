"""The LocalCluster that `--scheduler local` starts: workers whose memory does not grow with time worked."""

from distributed import Client


def test_local_workers_keep_no_call_tree_per_second(local_cluster):
    """A Dask worker's profiler keeps each second's call tree for 1,000 seconds: about 0.5 MB a second
    of the analyzers' work, so a worker grew to 1 GB over a whole store (docs/fleet.md)."""
    # nested, so that cloudpickle sends them by value: the workers cannot import this test module
    def busy(seconds):
        import time

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sum(range(1000))
        return seconds

    def profiling(dask_worker):
        """Whether this worker samples its tasks' stacks, and how many seconds of call trees it keeps."""
        return "profile" in dask_worker.periodic_callbacks, len(dask_worker.profile_history)

    with Client(local_cluster) as client:
        client.gather(client.map(busy, [1.5, 1.6]))
        state = client.run(profiling)
    assert len(state) == 2
    assert all(sampling is False and kept == 0 for sampling, kept in state.values()), state
