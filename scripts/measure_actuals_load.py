"""Peak memory of the actuals loader on a large actuals file, against moto in-process.

    .venv/bin/python scripts/measure_actuals_load.py [--megabytes 64] [--gzip] [--server]

Writes a CSV of about --megabytes (record_id, label, observed_at; every id distinct, the
labels the classes "yes"/"no"), then loads it in a fresh child process with the loader
function's own code (``loader_from_environment``: the environment the template sets, S3
and DynamoDB through moto in the same process) and prints the child's peak RSS
(resource.getrusage), the time and the BatchWriteItem requests. moto keeps every item
in that process too, so both figures include its copy of the table; the peak RSS after
setup (file uploaded, nothing loaded) is printed beside it for that reason.

With --server, moto runs as the embedded server of the local cloud (another process),
so the child's peak RSS is the loader's alone.

To measure an older version, run it with PYTHONPATH pointing at that version's src/.

Measured (64 MB, 1,740,000 rows, 69,600 BatchWriteItem requests either way): with
--server, 747 MB peak RSS reading the whole file before, 223 MB streaming (215 MB of
it imports); in-process, 3,260 MB before and 3,334 MB after, nearly all moto's items.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUCKET = "modelwatch-measure"
TABLE = "modelwatch-actuals-measure"


def peak_rss_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_file(path: Path, megabytes: int, compressed: bool) -> int:
    """An actuals CSV of at least ``megabytes`` of text; returns its data rows."""
    target = megabytes * 1024 * 1024
    opener = gzip.open if compressed else open
    rows = written = 0
    with opener(path, "wt", encoding="utf-8", newline="") as out:  # type: ignore[operator]
        header = "record_id,label,observed_at\n"
        out.write(header)
        written += len(header)
        while written < target:
            lines = "".join(
                f"rec-{rows + i:09d},{'yes' if (rows + i) % 3 else 'no'},2026-11-25T10:00:00Z\n"
                for i in range(10_000)
            )
            out.write(lines)
            written += len(lines)
            rows += 10_000
    return rows


def child(path: Path, model_dir: Path, max_megabytes: int, server: bool) -> None:
    import contextlib

    import boto3
    from moto import mock_aws

    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "ACTUALS_TABLE": TABLE,
            "MODEL_DIR": str(model_dir),
            "MODEL_NAME": "measure",
            "METRICS_NAMESPACE": "ModelWatch",
            "MAX_ACTUALS_MEGABYTES": str(max_megabytes),
        }
    )
    embedded = None
    if server:
        from modelwatch.local.moto_server import start_moto_server

        embedded = start_moto_server()
        os.environ["AWS_ENDPOINT_URL"] = embedded.endpoint_url
    with mock_aws() if embedded is None else contextlib.nullcontext():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb").create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "record_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "record_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        key = f"actuals/{path.name}"
        s3.upload_file(str(path), BUCKET, key)

        from modelwatch.actuals_loading import loader_from_environment

        loader = loader_from_environment()
        setup_peak = peak_rss_megabytes()
        started = time.perf_counter()
        result = loader.load(BUCKET, key)
        seconds = time.perf_counter() - started
        pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=TABLE, Select="COUNT")
        items = sum(page["Count"] for page in pages)
    if embedded is not None:
        embedded.stop()
    print(
        json.dumps(
            {
                "peak_rss_mb_after_setup": round(setup_peak),
                "peak_rss_mb": round(peak_rss_megabytes()),
                "load_seconds": round(seconds, 1),
                "items_in_table": items,
                "result": result,
            },
            default=str,
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--server", action="store_true", help="moto in another process (the local cloud's)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child, arguments.model_dir, arguments.megabytes + 1, arguments.server)
        return 0
    with tempfile.TemporaryDirectory(prefix="measure-actuals-") as directory:
        folder = Path(directory)
        model_dir = folder / "model"
        model_dir.mkdir()
        metadata = {
            "name": "measure",
            "version": "1",
            "task": "classification",
            "model_file": "model.skops",
            "id_column": "record_id",
            "target": "label",
            "features": [{"name": "x", "type": "numeric"}],
            "classes": ["no", "yes"],
            "positive_label": "yes",
        }
        (model_dir / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
        path = folder / ("actuals.csv.gz" if arguments.gzip else "actuals.csv")
        rows = write_file(path, arguments.megabytes, arguments.gzip)
        print(f"{path.name}: {path.stat().st_size / 2**20:.1f} MB on disk, {rows:,} rows", flush=True)
        completed = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(path),
                "--model-dir",
                str(model_dir),
                "--megabytes",
                str(arguments.megabytes),
                *(["--server"] if arguments.server else []),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode:
            print(completed.stderr[-3000:], file=sys.stderr)
            return completed.returncode
        print(completed.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
