"""Large batches: the compute path's rows/s and the batch monitor's peak memory (run by bench.py).

Each size runs in a fresh process (``python scripts/bench_chunked.py --rows N``); its peak
RSS is measured from just before ``BatchMonitor.process`` (after the upload to the
server), so it is the batch's with the warm state (model, libraries) it runs in. The
process uploads a CSV of N rows of the sample scenario (the sample batches repeated
under suffixed ids, written to out/bench/ once) to an embedded moto server and runs
``BatchMonitor.process`` on it: S3 read, ledger, predictions upload, report and metrics
go to moto. Two parts are in-memory
stand-ins, and the output says so: the actuals (the sample's, looked up by the id
without its suffix: the embedded server answers ~60 BatchGetItem a second, hours for
16 million rows) and the prediction log (counted, not written: ~150 BatchWriteItem a
second on the server). The compute path is read -> validate -> predict -> measure
(metrics, estimate, drift) -> write predictions: the report's total without s3_read. The
actuals stand-in's lookups stay in it (they run in the read-ahead thread, beside the
model), and the phases overlap, so they add up to more than the total.

``--parquet``: the same rows as a Parquet file (typed columns, snappy pages, row groups of
PARQUET_ROW_GROUP_ROWS rows, written once under out/bench-parquet/), read a chunk of whole
row groups at a time.

``--rows N --window``: retraining's side instead, in this process: the batch as the one
published batch of the window, and the peak RSS of gather_labeled_window over it, with
the sample's labels for one copy of the sample rows in ``--labeled-every`` (10: about 9%
of the rows) from an in-memory stand-in for the actuals table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samplefiles" / "classification"
DATA_DIR = ROOT / "out" / "bench"
BUCKET = "modelwatch-bench"
PARQUET_DIR = ROOT / "out" / "bench-parquet"
PARQUET_ROW_GROUP_ROWS = 100_000
SIZES = (100_000, 1_000_000)
LARGE = 16_000_000  # ~1 GB of CSV
STAND_INS = (
    "in-memory stand-ins: actuals (the sample's, by id) and the prediction log (items counted, "
    "not written); S3, the ledger and CloudWatch are the embedded moto server"
)


def batch_file(rows: int) -> Path:
    """A CSV of ``rows`` sample rows, written once, a copy of the samples at a time."""
    path = DATA_DIR / f"sample-{rows}.csv"
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    header, lines = "", []
    for sample in sorted((SAMPLES / "batches").glob("batch-*.csv")):
        header, *body = sample.read_text().splitlines()
        lines.extend(body)
    partial = path.with_suffix(".partial")
    with partial.open("w") as file:
        file.write(header + "\n")
        written = copy = 0
        while written < rows:
            take = lines[: rows - written]
            # The id is the first field: "b01-r00000" becomes "b01-r00000-<copy>".
            file.write("".join(line.replace(",", f"-{copy},", 1) + "\n" for line in take))
            written += len(take)
            copy += 1
    partial.rename(path)
    return path


def parquet_file(rows: int) -> Path:
    """batch_file's rows as Parquet, with the types pandas reads the CSV's columns as."""
    import fastparquet
    import pandas as pd

    path = PARQUET_DIR / f"sample-{rows}.parquet"
    if path.exists():
        return path
    PARQUET_DIR.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(batch_file(rows), dtype={"record_id": str})
    partial = path.with_suffix(".partial")
    fastparquet.write(
        str(partial), frame, row_group_offsets=PARQUET_ROW_GROUP_ROWS, compression="SNAPPY", write_index=False
    )
    partial.rename(path)
    return path


class TimedLog:
    """The real prediction log (to the embedded server), with this process's CPU time and
    the wall time of writing it. It writes after the batch, the ids the monitor logged, so
    the other threads are idle and the CPU is the log's (boto3's, mostly). The server's own
    CPU is in its process, not counted."""

    def __init__(self, log: Any) -> None:
        self.log, self.items, self.cpu_seconds, self.seconds = log, 0, 0.0, 0.0

    def record(self, batch_id: str, record_ids: list[Any]) -> int:
        started, cpu_started = time.perf_counter(), time.process_time()
        written = self.log.record(batch_id, record_ids)
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += time.process_time() - cpu_started
        self.items += written
        return written


class CountingLog:
    """The prediction log's stand-in: counts what would be written (and, ``keep``, keeps
    each chunk's ids to write them for real afterwards)."""

    def __init__(self, keep: bool = False) -> None:
        self.items = 0
        self.kept: list[tuple[str, list[Any]]] | None = [] if keep else None

    def record(self, batch_id: str, record_ids: Any) -> int:
        record_ids = list(record_ids)
        self.items += len(record_ids)
        if self.kept is not None:
            self.kept.append((batch_id, record_ids))
        return len(record_ids)


def start_bench_aws(settings: dict[str, str]) -> Any:
    """An embedded moto server, with this process's environment pointing boto3 (and the
    functions' settings, ``settings``) at it; the caller stops it."""
    from modelwatch.local.moto_server import start_moto_server

    aws = start_moto_server()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            **settings,
        }
    )
    return aws


def reset_peak_rss() -> None:
    """Start the peak over from the current RSS (Linux: clear_refs 5 resets VmHWM), so the
    peak is that of BatchMonitor.process with the warm state it runs in (model, imports)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def peak_rss_mb() -> float:
    """VmHWM, the peak RSS since reset_peak_rss (ru_maxrss cannot be reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(rows: int, parquet: bool = False, real_log: bool = False) -> dict[str, Any]:
    """One batch of ``rows`` rows (CSV, or Parquet) through BatchMonitor.process; this
    process's numbers. ``real_log``: the prediction log is written to the embedded server
    (through the client the monitor uses), and its CPU and wall time are reported."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    from modelwatch.actuals import read_actuals_file
    from modelwatch.config import MonitorConfig
    from modelwatch.ledger import BatchLedger
    from modelwatch.model_bundle import load_bundle
    from modelwatch.monitor import BatchMonitor
    from modelwatch.prediction_log import WRITE_CLIENT_CONFIG, PredictionLog
    from modelwatch.results import BatchObject, ResultStore

    path = parquet_file(rows) if parquet else batch_file(rows)
    model_dir = ROOT / ".build" / "bench-model"
    aws = start_bench_aws(
        {
            "LEDGER_TABLE": "bench-ledger",
            "ACTUALS_TABLE": "bench-actuals-stand-in",
            "PREDICTION_LOG_TABLE": "bench-prediction-log-stand-in",
            "MODEL_DIR": str(model_dir),
            # The bench measures memory and time, not the limit (which bounds a Parquet
            # file's decompressed pages too: the CSV's size, twice over, covers them).
            "MAX_BATCH_MEGABYTES": str(max(64, 2 * batch_file(rows).stat().st_size // 1_000_000 + 1)),
        }
    )
    try:
        s3, dynamodb, cloudwatch = boto3.client("s3"), boto3.client("dynamodb"), boto3.client("cloudwatch")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb.create_table(
            TableName="bench-ledger",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        )
        if real_log:
            dynamodb.create_table(
                TableName="bench-prediction-log",
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "record_id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "record_id", "AttributeType": "S"}],
            )
        bundle = load_bundle(model_dir)
        metadata = bundle.metadata
        sample_actuals = {
            record_id: actual
            for record_id, actual, _ in read_actuals_file(
                (SAMPLES / "actuals.csv").read_bytes(), "actuals.csv", metadata.id_column, metadata.target
            )
        }

        def actuals(ids: list[str], stats: Any) -> dict[str, Any]:
            found = {}
            for record_id in ids:
                actual = sample_actuals.get(record_id.rpartition("-")[0])
                if actual is not None:
                    found[record_id] = actual
            return found

        key = f"incoming/bench-{rows}{path.suffix}"
        s3.upload_file(str(path), BUCKET, key, Config=TransferConfig(multipart_chunksize=64 << 20))
        # The upload's buffers (64 MB parts, 10 threads) are the bench's, not the monitor's.
        reset_peak_rss()
        log = CountingLog(keep=real_log)
        monitor = BatchMonitor(
            MonitorConfig.from_env(),
            bundle,
            ResultStore(s3),
            actuals,
            cloudwatch,
            BatchLedger(dynamodb, "bench-ledger"),
            log,
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        report = monitor.process(BatchObject(BUCKET, key)).to_dict()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        if log.kept is not None:
            # The log's chunks as the monitor gave them, written for real (see TimedLog).
            timed = TimedLog(
                PredictionLog(
                    boto3.client("dynamodb", config=WRITE_CLIENT_CONFIG),
                    "bench-prediction-log",
                    retention_days=1,
                )
            )
            for batch_id, record_ids in log.kept:
                timed.record(batch_id, record_ids)
    finally:
        aws.stop()
    assert report["status"] == "ok", report
    model_seconds = model_only_seconds(bundle, path)
    timings = report["timings_ms"]
    # The actuals stand-in runs in the read-ahead thread, overlapping the model, so it is
    # not subtracted: its cost on the critical path stays in the figure.
    compute_ms = timings["total_ms"] - timings.get("s3_read_ms", 0.0)
    return {
        "rows": rows,
        "format": path.suffix.removeprefix("."),
        "bytes": path.stat().st_size,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,  # this process's, all threads (the model predicts on two)
        "compute_rows_per_second": rows / (compute_ms / 1000),
        "model_rows_per_second": min(rows, CHUNK_SAMPLE) / model_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "timings_ms": timings,
        "labeled_rows": report["labeled_rows"],
        "logged": log.items,
        **(
            {"log_items": timed.items, "log_seconds": timed.seconds, "log_cpu_seconds": timed.cpu_seconds}
            if real_log
            else {}
        ),
        "metrics": report["metrics"],
    }


CHUNK_SAMPLE = 100_000


def model_only_seconds(bundle: Any, path: Path) -> float:
    """The model's own time for the batch's first 100,000 rows (predict as the monitor
    calls it, best of three): the ceiling the whole compute path runs under."""
    from modelwatch.batch_files import read_batch_chunks
    from modelwatch.scoring import predict
    from modelwatch.validation import SeenIds, check_rows

    chunk = next(read_batch_chunks(path, path.name, 1 << 40, CHUNK_SAMPLE))
    features = check_rows(chunk.frame, bundle.metadata, path.name, 0, SeenIds()).features
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        predict(bundle, features, path.name)
        best = min(best, time.perf_counter() - started)
    return best


def floor_cpu_seconds(bundle: Any, path: Path) -> dict[str, float]:
    """CPU-s per million rows of what no compute path can skip, each alone and at its most
    CPU-efficient (best of three on the batch's first 100,000 rows): pandas parsing the CSV,
    the model's predict on one thread (OpenMP's second thread costs CPU in barriers), and the
    predictions file's text and gzip. Validation, actuals, metrics, drift and the estimate
    come on top of it."""
    import gzip
    import io

    import pandas as pd
    from threadpoolctl import threadpool_limits

    from modelwatch.batch_files import read_batch_chunks
    from modelwatch.monitor import csv_text
    from modelwatch.results import PREDICTIONS_GZIP_LEVEL
    from modelwatch.scoring import predict
    from modelwatch.validation import SeenIds, check_rows

    with path.open("rb") as file:
        head = b"".join(file.readline() for _ in range(CHUNK_SAMPLE + 1))
    chunk = next(read_batch_chunks(path, path.name, 1 << 40, CHUNK_SAMPLE))
    validated = check_rows(chunk.frame, bundle.metadata, path.name, 0, SeenIds())
    features = validated.features
    predicted = predict(bundle, features, path.name)
    table = pd.DataFrame({bundle.metadata.id_column: validated.ids, "prediction": predicted.labels})
    if predicted.probabilities is not None:
        table["probability"] = predicted.probabilities.max(axis=1)

    def best_cpu(step: Callable[[], object]) -> float:
        spent = float("inf")
        for _ in range(3):
            started = time.process_time()
            step()
            spent = min(spent, time.process_time() - started)
        return spent * 1_000_000 / len(features)

    def single_thread_predict() -> None:
        with threadpool_limits(limits=1):
            predict(bundle, features, path.name)

    return {
        "parse": best_cpu(lambda: pd.read_csv(io.BytesIO(head))),
        "model": best_cpu(single_thread_predict),
        "write": best_cpu(lambda: gzip.compress(csv_text(table, True).encode(), PREDICTIONS_GZIP_LEVEL)),
    }


def run_window(rows: int, parquet: bool, labeled_every: int) -> dict[str, Any]:
    """gather_labeled_window over one batch of ``rows`` rows; this process's numbers."""
    import boto3

    import modelwatch.retraining as retraining
    from modelwatch.actuals import read_actuals_file
    from modelwatch.config import RetrainConfig
    from modelwatch.model_bundle import load_bundle

    path = parquet_file(rows) if parquet else batch_file(rows)
    model_dir = ROOT / ".build" / "bench-model"
    aws = start_bench_aws({})
    try:
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        s3.create_bucket(Bucket=BUCKET)
        key = f"incoming/bench-{rows}{path.suffix}"
        s3.upload_file(str(path), BUCKET, key)
        dynamodb.create_table(
            TableName="bench-ledger",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        )
        now = datetime.now(UTC)
        # The ledger item of a published batch, as far as published_batches reads it.
        item = {"s3_bucket": BUCKET, "s3_key": key, "version_id": "null"}
        dynamodb.put_item(
            TableName="bench-ledger",
            Item={
                "id": {"S": "bench"},
                **{name: {"S": value} for name, value in item.items()},
                "batch_event_time": {"S": (now - timedelta(hours=1)).isoformat()},
            },
        )
        metadata = load_bundle(model_dir).metadata
        sample_actuals = {
            record_id: actual
            for record_id, actual, _ in read_actuals_file(
                (SAMPLES / "actuals.csv").read_bytes(), "actuals.csv", metadata.id_column, metadata.target
            )
        }

        def actuals(client: Any, table: str, ids: list[str], *_: Any, **__: Any) -> dict[str, Any]:
            found = {}
            for record_id in ids:
                sample_id, _, copy = record_id.rpartition("-")
                actual = sample_actuals.get(sample_id)
                if actual is not None and int(copy) % labeled_every == 0:
                    found[record_id] = actual
            return found

        retraining.fetch_actuals = actuals  # the stand-in for the actuals table
        config = RetrainConfig(
            model_dir=model_dir,
            actuals_table="bench-actuals-stand-in",
            ledger_table="bench-ledger",
            bucket=BUCKET,
            alert_topic_arn="",
            max_batch_megabytes=max(64, 2 * batch_file(rows).stat().st_size // 1_000_000 + 1),
        )
        reset_peak_rss()
        warm_mb = peak_rss_mb()
        started = time.perf_counter()
        window = retraining.gather_labeled_window(
            s3=s3, dynamodb=dynamodb, config=config, metadata=metadata, now=now
        )
        seconds = time.perf_counter() - started
    finally:
        aws.stop()
    assert not window.skipped, window.skipped
    return {
        "rows": rows,
        "format": path.suffix.removeprefix("."),
        "labeled_rows": window.rows,
        "seconds": seconds,
        "warm_rss_mb": warm_mb,
        "peak_rss_mb": peak_rss_mb(),
        "window_features_mb": float(window.features.memory_usage(deep=True).sum()) / 1e6,
    }


def measure(rows: int, parquet: bool = False, real_log: bool = False) -> dict[str, Any]:
    """``run`` in a fresh process (its own peak RSS)."""
    # Written here, so generating the file is not in the child's numbers.
    if parquet:
        parquet_file(rows)
    else:
        batch_file(rows)
    output = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--rows",
            str(rows),
            *(["--parquet"] if parquet else []),
            *(["--real-log"] if real_log else []),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
        },
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def print_large_batches(large: bool, parquet: bool = False) -> None:
    sizes = (*SIZES, LARGE) if large else SIZES
    what = f"Parquet batches (row groups of {PARQUET_ROW_GROUP_ROWS:,} rows)" if parquet else "batches"
    print(f"\nlarge {what} through BatchMonitor.process, each size in a fresh process ({STAND_INS})")
    print(
        f"{'rows':>12}{'MB':>8}{'seconds':>10}{'CPU s':>8}{'compute rows/s':>16}{'model rows/s':>14}"
        f"{'peak RSS MB':>13}  phases (s)"
    )
    for rows in sizes:
        result = measure(rows, parquet)
        phases = ", ".join(
            f"{name.removesuffix('_ms')}={value / 1000:.1f}"
            for name, value in result["timings_ms"].items()
            if name != "total_ms"
        )
        print(
            f"{rows:>12,}{result['bytes'] / 1e6:>8,.0f}{result['seconds']:>10.1f}"
            f"{result['cpu_seconds']:>8.1f}"
            f"{result['compute_rows_per_second']:>16,.0f}{result['model_rows_per_second']:>14,.0f}"
            f"{result['peak_rss_mb']:>13,.0f}  {phases}"
        )
    print(
        "model rows/s: the model alone (predict, as the monitor calls it) on 100,000 of those rows, "
        "best of three: the ceiling of the compute path"
    )
    if not large:
        print(f"(the {LARGE:,}-row, ~1 GB run: make bench-large, or make bench ARGS=--large)")
    if not parquet:
        print_floor()
        print_prediction_log_cost()


def print_floor() -> None:
    """The compute path's ceiling on this machine, from what it cannot skip."""
    from modelwatch.model_bundle import load_bundle

    floor = floor_cpu_seconds(load_bundle(ROOT / ".build" / "bench-model"), batch_file(SIZES[0]))
    total = sum(floor.values())
    cores = len(os.sched_getaffinity(0))
    parts = " + ".join(f"{name} {seconds:.1f}" for name, seconds in floor.items())
    print(
        f"floor, CPU-s per million rows of what no compute path skips: {parts} = {total:.1f}; "
        f"with all {cores} cores busy and nothing else to do, at most {cores / total * 1e6:,.0f} rows/s "
        "(the model on one thread: its OpenMP threads cost more CPU in all)"
    )


LOG_ROWS = 100_000


def print_prediction_log_cost() -> None:
    """What the stand-in leaves out: the prediction log of LOG_ROWS rows written for real."""
    result = measure(LOG_ROWS, real_log=True)
    per_million = result["log_cpu_seconds"] * 1_000_000 / result["log_items"]
    print(
        f"prediction log, written for real to the embedded server: {result['log_items']:,} items in "
        f"{result['log_seconds']:.1f} s (the server's pace), {result['log_cpu_seconds']:.1f} CPU-s in the "
        f"monitor's process: {per_million:.0f} CPU-s per million rows, {per_million * LARGE / 1e6 / 60:.0f} "
        f"CPU-minutes at {LARGE:,} rows (boto3 holds the GIL for most of it)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="run one batch of this many rows here and print its JSON")
    parser.add_argument("--large", action="store_true", help="also the 16-million-row (~1 GB) batch")
    parser.add_argument("--parquet", action="store_true", help="the same rows as a Parquet file")
    parser.add_argument("--window", action="store_true", help="with --rows: retraining's gather of the batch")
    parser.add_argument(
        "--real-log", action="store_true", help="with --rows: write the prediction log to the embedded server"
    )
    parser.add_argument(
        "--labeled-every", type=int, default=10, help="--window: one copy of the samples in K"
    )
    options = parser.parse_args()
    if options.rows and options.window:
        print(json.dumps(run_window(options.rows, options.parquet, options.labeled_every)))
    elif options.rows:
        print(json.dumps(run(options.rows, options.parquet, options.real_log)))
    else:
        print_large_batches(options.large, options.parquet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
