"""Parquet files for tests, written by DuckDB: a writer that shares no code with the reader
(fastparquet), and that, unlike pyarrow, does not change pandas' string storage when it is
installed (pandas 3 stores strings in pyarrow whenever pyarrow can be imported, which the
Lambda runtime cannot)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import pandas as pd


def parquet_bytes(
    frame: pd.DataFrame | None = None,
    *,
    select: str = "SELECT * FROM frame",
    row_group_size: int = 122_880,
    compression: str = "snappy",
) -> bytes:
    """The Parquet file of ``select`` (a DuckDB query; ``frame`` is the table named frame)."""
    connection = duckdb.connect()
    try:
        if frame is not None:
            connection.register("frame", frame)
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "file.parquet"
            connection.execute(
                f"COPY ({select}) TO '{path}' "
                f"(FORMAT PARQUET, ROW_GROUP_SIZE {row_group_size}, COMPRESSION {compression})"
            )
            return path.read_bytes()
    finally:
        connection.close()
