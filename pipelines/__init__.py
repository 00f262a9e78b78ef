"""I/O, orchestration and tracking around :mod:`vae_core`: the Parquet lake, Prefect flows, the CLI."""
