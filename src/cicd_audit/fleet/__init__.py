"""Fleet scale: a Parquet store of sessions, and analysis and queries over it on Dask."""
