"""The runner agent: one session per CI job, its control socket and per-job policies."""
