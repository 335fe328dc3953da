"""`make bench`: a 20,000-row batch end to end against an embedded moto server, and the
cold start with and without the runtime layer's bytecode.

Compares this implementation (BatchGetItem, 100 keys a request, 8 threads) with the
naive first attempt (one GetItem per row) on the same server, data and model, and
prints rows/s, DynamoDB requests and the ratio. Everything else in the pipeline is the
same code, so the ratio is the actuals strategy's. Also prints what the performance
estimate (CBPE) costs on the same batch, the drift timing, one retrain on 100,000 labeled
rows (phases and peak memory, against the RetrainFunction's memory and timeout:
scripts/bench_retrain.py), then the cold init of the batch monitor with and without
bytecode and their ratio (scripts/bench_cold_start.py). `--cold-start` runs only that
part, `--retrain` only the retrain. Last, large batches (scripts/bench_chunked.py):
the compute path's rows/s and the peak memory of 100,000- and 1,000,000-row batches,
each in a fresh process; `--large` adds the 16,000,000-row (~1 GB) batch, and
`--large-only` runs just those sizes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / ".build" / "bench-model"
SAMPLES = ROOT / "samplefiles" / "classification"
ROWS = 20_000
BUCKET = "modelwatch-bench"


def build_model() -> None:
    from modelwatch.local.demo import ensure_sample_model

    ensure_sample_model(MODEL_DIR, ROOT / "template.yaml")


def bench_data(id_column: str, actuals: list[tuple[str, Any, str | None]]) -> tuple[pd.DataFrame, list[Any]]:
    """ROWS batch rows and their actuals: the sample batches, repeated under suffixed ids
    (-0, -1, ...) until there are ROWS of them (the samples hold 12,000)."""
    import fastparquet

    frames = [
        fastparquet.ParquetFile(path).to_pandas()
        if path.suffix == ".parquet"
        else pd.read_csv(path, dtype={id_column: str})
        for path in sorted((SAMPLES / "batches").glob("batch-*"))
    ]
    sample = pd.concat(frames, ignore_index=True)
    copies = -(-ROWS // len(sample))
    rows = pd.concat(
        [sample.assign(**{id_column: sample[id_column] + f"-{copy}"}) for copy in range(copies)],
        ignore_index=True,
    ).head(ROWS)
    wanted = set(rows[id_column])
    records = [
        (f"{record_id}-{copy}", actual, observed_at)
        for copy in range(copies)
        for record_id, actual, observed_at in actuals
        if f"{record_id}-{copy}" in wanted
    ]
    return rows, records


def print_estimate_cost(bundle: Any, rows: pd.DataFrame, metadata: Any, report: dict[str, Any]) -> None:
    """What estimated performance (CBPE) adds to the batch above: the estimate alone on the
    same 20,000 rows' probabilities, median of 7 runs, against the batch's total time."""
    import numpy as np

    from modelwatch.scoring import Scorer

    estimator = Scorer(bundle, 30, 0.2).estimator
    if estimator is None:
        print(f"estimate: none ({report['estimated_performance'].get('skipped')})")
        return
    features = rows[metadata.feature_names]
    probabilities = np.asarray(bundle.estimator.predict_proba(features), dtype=float)
    labels = np.asarray(bundle.estimator.predict(features))
    labeled = np.zeros(len(rows), dtype=bool)
    timings = []
    for _ in range(7):
        started = time.perf_counter()
        estimator.estimate(probabilities, labels, labeled, {})
        timings.append((time.perf_counter() - started) * 1000)
    median = float(np.median(timings))
    total = report["timings_ms"]["total_ms"]
    print(
        f"estimate (CBPE: calibration, expected confusion matrix, 6 metrics, bands): {median:.1f} ms "
        f"(median of 7) for {len(rows):,} rows = {median / total * 100:.2f}% of the batch's "
        f"{total:,.0f} ms end to end"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold-start", action="store_true", help="only the cold-start comparison")
    parser.add_argument("--repetitions", type=int, default=5, help="cold starts per layer (median)")
    parser.add_argument("--label-join", action="store_true", help="only the label join comparison")
    parser.add_argument("--retrain", action="store_true", help="only the retrain on 100,000 labeled rows")
    parser.add_argument("--large", action="store_true", help="also the 16-million-row (~1 GB) batch")
    parser.add_argument(
        "--large-only", action="store_true", help="only the large batches (with --large: all)"
    )
    options = parser.parse_args()
    from bench_chunked import print_large_batches  # beside this script, like bench_drift
    from bench_retrain import bench_retrain

    if options.label_join:
        bench_batch(label_join_only=True)
        return 0
    if options.retrain:
        bench_retrain()
        return 0
    if options.large_only:
        print_large_batches(options.large)
        return 0
    if not options.cold_start:
        bench_batch()
        bench_retrain()
    from bench_cold_start import print_cold_start

    print_cold_start(options.repetitions)
    if not options.cold_start:
        print_large_batches(options.large)
    return 0


def bench_batch(label_join_only: bool = False) -> None:
    from bench_chunked import start_bench_aws  # beside this script

    from modelwatch.actuals import RequestStats, read_actuals_file, write_actuals
    from modelwatch.config import MonitorConfig
    from modelwatch.ledger import BatchLedger
    from modelwatch.model_bundle import load_bundle
    from modelwatch.monitor import BatchMonitor, dynamodb_actuals
    from modelwatch.prediction_log import PredictionLog
    from modelwatch.results import BatchObject, ResultStore

    build_model()
    aws = start_bench_aws(
        {
            "ACTUALS_TABLE": "bench-actuals",
            "LEDGER_TABLE": "bench-ledger",
            "PREDICTION_LOG_TABLE": "bench-prediction-log",
            "MODEL_DIR": str(MODEL_DIR),
        }
    )
    try:
        s3, dynamodb, cloudwatch = boto3.client("s3"), boto3.client("dynamodb"), boto3.client("cloudwatch")
        s3.create_bucket(Bucket=BUCKET)
        # Versioned, as the stack's bucket is: the label join reads the version the ledger pins.
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for table in ("bench-actuals", "bench-ledger", "bench-prediction-log"):
            key_name = "id" if table == "bench-ledger" else "record_id"
            dynamodb.create_table(
                TableName=table,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": key_name, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key_name, "AttributeType": "S"}],
            )
        metadata = load_bundle(MODEL_DIR).metadata
        actuals = read_actuals_file(
            (SAMPLES / "actuals.csv").read_bytes(), "actuals.csv", metadata.id_column, metadata.target
        )
        rows, records = bench_data(metadata.id_column, actuals)
        write_actuals(dynamodb, "bench-actuals", records)
        body = rows.to_csv(index=False).encode()
        config = MonitorConfig.from_env()
        bundle = load_bundle(MODEL_DIR)
        store = ResultStore(s3)

        def naive_reader(ids, stats: RequestStats):
            """The first attempt: one GetItem per row, in order."""
            found = {}
            for record_id in ids:
                stats.count(retry=False)
                item = dynamodb.get_item(TableName="bench-actuals", Key={"record_id": {"S": record_id}}).get(
                    "Item"
                )
                if item and "actual" in item:
                    found[record_id] = boto3.dynamodb.types.TypeDeserializer().deserialize(item["actual"])
            return found

        readers = {
            "modelwatch": dynamodb_actuals(dynamodb, "bench-actuals"),
            "naive GetItem loop": naive_reader,
        }
        if label_join_only:
            bench_label_join(config, bundle, store, dynamodb, cloudwatch, rows, records, metadata)
            return
        results = {}
        for name, reader in readers.items():
            monitor = BatchMonitor(
                config,
                bundle,
                store,
                reader,
                cloudwatch,
                BatchLedger(dynamodb, "bench-ledger"),
                PredictionLog(dynamodb, "bench-prediction-log", retention_days=1),
            )
            key = f"incoming/bench-{name.split()[0]}.csv"
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            started = time.perf_counter()
            report = monitor.process(BatchObject(BUCKET, key)).to_dict()
            seconds = time.perf_counter() - started
            requests = report["actuals_requests"]
            results[name] = (seconds, requests, report)
        print(
            f"\nmodelwatch bench: {len(rows):,}-row batch end to end on an embedded moto server "
            f"({aws.endpoint_url}), labeled rows {results['modelwatch'][2]['labeled_rows']:,}"
        )
        print(f"{'implementation':<22}{'seconds':>10}{'rows/s':>12}{'DynamoDB requests':>20}")
        for name, (seconds, requests, _) in results.items():
            print(f"{name:<22}{seconds:>10.2f}{len(rows) / seconds:>12,.0f}{requests:>20,}")
        fast, slow = results["modelwatch"][0], results["naive GetItem loop"][0]
        print(
            f"throughput ratio: {slow / fast:.1f}x (modelwatch vs naive), "
            f"requests ratio: {results['naive GetItem loop'][1] / results['modelwatch'][1]:.0f}x fewer"
        )
        timings = results["modelwatch"][2]["timings_ms"]
        print("modelwatch phase timings (ms): " + ", ".join(f"{k}={v:.0f}" for k, v in timings.items()))
        print_estimate_cost(bundle, rows, metadata, results["modelwatch"][2])
        try:
            from bench_drift import time_drift  # beside this script, which Python puts on sys.path
        except ImportError:
            print("drift: scripts/bench_drift.py not available")
        else:
            drift = time_drift(rows=100_000, features=20)
            # Drift is timed inside the measure phase (metrics, estimate, drift) since the
            # restructure; that phase's share bounds it.
            share = timings.get("measure_ms", 0) / timings["total_ms"] * 100
            print(
                f"drift: 100,000 rows x 20 features in {drift['median_ms']:.0f} ms (median); "
                f"measure phase (metrics, estimate and drift) share of the {len(rows):,}-row batch above: "
                f"{share:.1f}%"
            )
        bench_label_join(config, bundle, store, dynamodb, cloudwatch, rows, records, metadata)
    finally:
        aws.stop()


LATE_ROWS = 5_000
LATE_LABELS = 1_000


def bench_join(config, metadata, log, ledger, dynamodb, store, cloudwatch, **options: Any) -> Any:
    """The label join on the bench's tables and bucket."""
    from modelwatch.label_join import LabelJoin

    return LabelJoin(
        metadata,
        "bench",
        "ModelWatchBench",
        config.min_labeled_rows,
        log,
        ledger,
        dynamodb,
        "bench-actuals",
        store,
        cloudwatch,
        **options,
    )


def bench_label_join(config, bundle, store, dynamodb, cloudwatch, rows, records, metadata) -> None:
    """Late labels: a 5,000-row batch scored without labels, then 1,000 of its labels
    joined by the label join vs the naive per-label lookup (GetItem on the prediction log
    and on the actuals table for each label)."""
    from modelwatch.actuals import write_actuals
    from modelwatch.ledger import BatchLedger
    from modelwatch.monitor import BatchMonitor, dynamodb_actuals
    from modelwatch.prediction_log import PredictionLog
    from modelwatch.results import BatchObject

    id_column = metadata.id_column
    late = rows.head(LATE_ROWS).assign(**{id_column: lambda frame: "late-" + frame[id_column]})
    labels = {f"late-{record_id}": actual for record_id, actual, _ in records}
    ledger = BatchLedger(dynamodb, "bench-ledger")
    log = PredictionLog(dynamodb, "bench-prediction-log", retention_days=1)
    monitor = BatchMonitor(
        config, bundle, store, dynamodb_actuals(dynamodb, "bench-actuals"), cloudwatch, ledger, log
    )
    key = "incoming/bench-late.csv"
    store.s3.put_object(Bucket=BUCKET, Key=key, Body=late.to_csv(index=False).encode())
    started = time.perf_counter()
    monitor.process(BatchObject(BUCKET, key))
    log_seconds = time.perf_counter() - started
    chosen = [record_id for record_id in late[id_column] if record_id in labels][:LATE_LABELS]
    write_actuals(dynamodb, "bench-actuals", [(record_id, labels[record_id], None) for record_id in chosen])

    calls = {"count": 0}

    def count(**_: Any) -> None:
        calls["count"] += 1

    dynamodb.meta.events.register("before-call.dynamodb", count)
    try:
        join = bench_join(config, metadata, log, ledger, dynamodb, store, cloudwatch)
        started = time.perf_counter()
        result = join.join(chosen)
        join_seconds = time.perf_counter() - started
        join_requests = calls["count"]

        calls["count"] = 0
        started = time.perf_counter()
        for record_id in chosen:  # the naive join: two lookups per label
            dynamodb.get_item(TableName="bench-prediction-log", Key={"record_id": {"S": record_id}})
            dynamodb.get_item(TableName="bench-actuals", Key={"record_id": {"S": record_id}})
        naive_seconds = time.perf_counter() - started
        naive_requests = calls["count"]
    finally:
        dynamodb.meta.events.unregister("before-call.dynamodb", count)
    assert result.batches and result.batches[0].newly_labeled == len(chosen), result
    print(
        f"\nlabel join: {len(chosen):,} labels of a {LATE_ROWS:,}-row batch (prediction log written "
        f"at upload: the whole batch took {log_seconds:.2f} s)"
    )
    print(f"{'implementation':<22}{'seconds':>10}{'labels/s':>12}{'DynamoDB requests':>20}")
    for name, seconds, requests in (
        ("label join", join_seconds, join_requests),
        ("naive per-label", naive_seconds, naive_requests),
    ):
        print(f"{name:<22}{seconds:>10.2f}{len(chosen) / seconds:>12,.0f}{requests:>20,}")
    print(
        f"per 1,000 labels: {join_requests * 1000 / len(chosen):,.0f} requests vs "
        f"{naive_requests * 1000 / len(chosen):,.0f} (the join also reads the rest of the batch's "
        f"actuals, {LATE_ROWS // 100} BatchGetItem requests, to recompute the batch exactly); "
        f"throughput ratio {naive_seconds / join_seconds:.1f}x"
    )
    bench_large_batch_join(config, bundle, store, dynamodb, cloudwatch, rows, records, metadata, ledger, log)


def bench_large_batch_join(
    config, bundle, store, dynamodb, cloudwatch, rows, records, metadata, ledger, log
) -> None:
    """1,000 labels joined into a batch of all ROWS rows, read two ways: every row's label
    again (a batch up to FULL_RECHECK_ROWS) and only the arrived labels (a larger one).
    The same batch under two id prefixes; CPU is this process's (the server's is its own)."""
    from modelwatch.actuals import write_actuals
    from modelwatch.monitor import BatchMonitor, dynamodb_actuals
    from modelwatch.results import BatchObject

    id_column = metadata.id_column
    labels = {record_id: actual for record_id, actual, _ in records}
    monitor = BatchMonitor(
        config, bundle, store, dynamodb_actuals(dynamodb, "bench-actuals"), cloudwatch, ledger, log
    )
    print(
        f"\nlabel join into a {len(rows):,}-row batch: {LATE_LABELS:,} labels, "
        "the batch's other labels not come yet"
    )
    print(f"{'labels read again':<22}{'seconds':>10}{'CPU-s':>10}{'DynamoDB requests':>20}")
    for name, recheck_rows in (("every row's", len(rows)), ("the arrived only", 0)):
        prefix = "whole-" if recheck_rows else "arrived-"
        batch = rows.assign(**{id_column: prefix + rows[id_column]})
        key = f"incoming/bench-{prefix}join.csv"
        store.s3.put_object(Bucket=BUCKET, Key=key, Body=batch.to_csv(index=False).encode())
        monitor.process(BatchObject(BUCKET, key))
        chosen = [f"{prefix}{record_id}" for record_id in rows[id_column] if record_id in labels][
            :LATE_LABELS
        ]
        write_actuals(
            dynamodb,
            "bench-actuals",
            [(record_id, labels[record_id.removeprefix(prefix)], None) for record_id in chosen],
        )
        join = bench_join(
            config, metadata, log, ledger, dynamodb, store, cloudwatch, full_recheck_rows=recheck_rows
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        result = join.join(chosen)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        assert result.batches and result.batches[0].newly_labeled == len(chosen), result
        print(f"{name:<22}{seconds:>10.2f}{cpu_seconds:>10.2f}{result.requests:>20,}")


if __name__ == "__main__":
    sys.exit(main())
