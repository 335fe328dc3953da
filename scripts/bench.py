"""`make bench`: a 20,000-row batch end to end against an embedded moto server.

Compares this implementation (BatchGetItem, 100 keys a request, 8 threads) with the
naive first attempt (one GetItem per row) on the same server, data and model, and
prints rows/s, DynamoDB requests and the ratio. Everything else in the pipeline is the
same code, so the ratio is the actuals strategy's. Also prints what the performance
estimate (CBPE) costs on the same batch, and the drift timing.
"""

from __future__ import annotations

import os
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
    from modelwatch.actuals import RequestStats, read_actuals_file, write_actuals
    from modelwatch.config import MonitorConfig
    from modelwatch.ledger import BatchLedger
    from modelwatch.local.moto_server import start_moto_server
    from modelwatch.model_bundle import load_bundle
    from modelwatch.monitor import BatchMonitor, dynamodb_actuals
    from modelwatch.results import BatchObject, ResultStore

    build_model()
    aws = start_moto_server()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "ACTUALS_TABLE": "bench-actuals",
            "LEDGER_TABLE": "bench-ledger",
            "MODEL_DIR": str(MODEL_DIR),
        }
    )
    try:
        s3, dynamodb, cloudwatch = boto3.client("s3"), boto3.client("dynamodb"), boto3.client("cloudwatch")
        s3.create_bucket(Bucket=BUCKET)
        for table in ("bench-actuals", "bench-ledger"):
            key_name = "record_id" if table == "bench-actuals" else "id"
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
        results = {}
        for name, reader in readers.items():
            monitor = BatchMonitor(
                config, bundle, store, reader, cloudwatch, BatchLedger(dynamodb, "bench-ledger")
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
            share = timings.get("drift_ms", 0) / timings["total_ms"] * 100
            print(
                f"drift: 100,000 rows x 20 features in {drift['median_ms']:.0f} ms (median); "
                f"drift share of the {len(rows):,}-row batch above: {share:.1f}%"
            )
    finally:
        aws.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
