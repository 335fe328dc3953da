"""`make bench-parquet`: the Parquet reader's cost in the runtime layer, fastparquet vs pyarrow.

Size: each candidate's wheels for the layer's platform (CPython 3.13, manylinux aarch64),
unpacked and pruned exactly as layers/runtime/Makefile prunes, so the figure is what the
layer would carry. Speed: the same file (the sample batches, repeated to ROWS rows, written
by DuckDB with snappy pages) read into pandas by each, median of REPEATS, plus modelwatch's
whole read_batch (fastparquet, checks included) and its CSV reader on the same rows.

pyarrow is installed into .build/bench-parquet/pyarrow and timed in a child process: in the
virtualenv it would switch pandas 3's string storage to pyarrow for every test, which the
Lambda runtime (no pyarrow) never does.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".build" / "bench-parquet"
SAMPLES = ROOT / "samplefiles" / "classification" / "batches"
ROWS = 200_000
REPEATS = 5
MIB = 1024 * 1024
LAYER_PLATFORM = [
    "--implementation",
    "cp",
    "--python-version",
    "3.13",
    "--only-binary=:all:",
    *[
        flag
        for tag in ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014")
        for flag in ("--platform", f"{tag}_aarch64")
    ],
]
PRUNED_DIRECTORIES = {"tests", "__pycache__"}
PRUNED_SUFFIXES = (".pyi", ".pxd", ".pyx", ".pxi", ".c", ".cpp", ".h", ".hpp", ".a")


def pinned(name: str) -> str:
    for path in (ROOT / "layers" / "runtime" / "requirements.txt", ROOT / "requirements" / "dev.txt"):
        for line in path.read_text().splitlines():
            if line.split("==")[0].strip().lower() == name:
                return line.strip()
    return name


def pruned_layer_bytes(requirements: list[str]) -> int:
    """Unpacked size of the wheels, less what the layer Makefile prunes."""
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
        + LAYER_PLATFORM
        + ["--dest", str(wheels), *requirements],
        check=True,
    )
    total = 0
    for requirement in requirements:
        name, version = requirement.split("==")
        prefix = f"{name.replace('-', '_')}-{version}-"
        (wheel,) = [path for path in wheels.glob("*.whl") if path.name.lower().startswith(prefix)]
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                parts = Path(member.filename).parts
                if member.is_dir() or PRUNED_DIRECTORIES & set(parts) or parts[-1] == "RECORD":
                    continue
                if parts[-1].endswith(PRUNED_SUFFIXES) or (len(parts) > 1 and parts[-2] == "bin"):
                    continue
                total += member.file_size
    return total


def write_sample(path: Path) -> int:
    import duckdb
    import pandas as pd

    sample = pd.concat(
        [pd.read_csv(file, dtype={"record_id": str}) for file in sorted(SAMPLES.glob("*.csv"))]
    )
    copies = -(-ROWS // len(sample))
    frame = pd.concat(
        [sample.assign(record_id=sample["record_id"] + f"-{copy}") for copy in range(copies)],
        ignore_index=True,
    ).head(ROWS)
    connection = duckdb.connect()
    connection.register("frame", frame)
    connection.execute(f"COPY frame TO '{path}' (FORMAT PARQUET, COMPRESSION snappy)")
    (path.with_suffix(".csv")).write_text(frame.to_csv(index=False))
    return len(frame.columns)


PYARROW_TIMING = """
import json, statistics, sys, time
import pyarrow.parquet as pq
seconds = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    frame = pq.read_table(sys.argv[1]).to_pandas()
    seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": statistics.median(seconds), "rows": len(frame)}))
"""


def median_seconds(call) -> float:
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    import io

    import fastparquet

    from modelwatch.batch_files import read_batch

    fastparquet_stack = [pinned("fastparquet"), pinned("cramjam"), pinned("fsspec")]
    # Not a dependency of modelwatch: the version the comparison was made with.
    pyarrow_stack = ["pyarrow==26.0.1"]
    sizes = {
        "fastparquet + cramjam + fsspec": pruned_layer_bytes(fastparquet_stack),
        "pyarrow": pruned_layer_bytes(pyarrow_stack),
    }
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "batch.parquet"
        columns = write_sample(path)
        body = path.read_bytes()
        csv_body = path.with_suffix(".csv").read_bytes()
        timings = {
            "fastparquet to_pandas": median_seconds(
                lambda: fastparquet.ParquetFile(io.BytesIO(body)).to_pandas()
            ),
            "modelwatch read_batch (.parquet)": median_seconds(
                lambda: read_batch(body, "incoming/bench.parquet", 10**9)
            ),
            "modelwatch read_batch (.csv)": median_seconds(
                lambda: read_batch(csv_body, "incoming/bench.csv", 10**9)
            ),
        }
        target = CACHE / "pyarrow"
        if not (target / ".complete").exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"]
                + [str(target), *pyarrow_stack],
                check=True,
            )
            (target / ".complete").touch()
        environment = {**os.environ, "PYTHONPATH": str(target)}
        child = subprocess.run(
            [sys.executable, "-c", PYARROW_TIMING, str(path), str(REPEATS)],
            capture_output=True,
            text=True,
            check=True,
            env=environment,
        )
        timings["pyarrow read_table().to_pandas()"] = json.loads(child.stdout)["seconds"]
        print(
            f"Parquet file: {ROWS:,} rows x {columns} columns, {len(body) / MIB:.1f} MiB "
            f"(CSV {len(csv_body) / MIB:.1f} MiB)"
        )
    print("\nruntime layer cost (cp313 manylinux aarch64 wheels, pruned as the layer Makefile prunes)")
    for name, size in sizes.items():
        print(f"  {name:<36} {size / MIB:7.1f} MiB")
    print(f"\nread into pandas, median of {REPEATS}")
    for name, seconds in timings.items():
        print(f"  {name:<36} {seconds * 1000:7.0f} ms   {ROWS / seconds:>12,.0f} rows/s")


if __name__ == "__main__":
    main()
