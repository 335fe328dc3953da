"""`make bench` (retrain part): one retrain of the sample churn model on 100,000 labeled rows.

The rows are the sample scenario's (scripts/generate_samples.py: the churn features and
the true relation, its concept drift included), 50 batches of 2,000 rows an hour apart,
the last ten drifting as the samples' batches 5-9 do and staying drifted. They are left
in an embedded moto server as the pipeline leaves them: each batch an S3 object version,
a ledger item marked published with its event time (BatchLedger, as the batch monitor
marks it) and every label in the actuals table (write_actuals, as the actuals loader
writes them).

The retrain itself runs in a fresh child process, Retrainer.retrain exactly as the retrain
function runs it (on demand, the degradation start given as the alarm's would give it), so
the child's ru_maxrss is the retrain's peak memory: moto serves from its own process, as
AWS would from outside the Lambda. Phases, each timed exclusive of the others it calls:

- gather: the ledger scan, every batch version read from S3, validated, and its labels
  read with BatchGetItem (100 keys a request);
- fit: the challengers, one per training window (whole window, since degradation);
- score: the champion and the challengers on the holdout (and the candidate's training
  metrics, when there is one);
- write: the candidate's model directory (serialised, its drift baseline rebuilt), the
  decision record and the announcement.

    python scripts/bench_retrain.py      (or: python scripts/bench.py --retrain)
"""

from __future__ import annotations

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
MODEL_DIR = ROOT / ".build" / "bench-model"
BATCHES = 50
ROWS_PER_BATCH = 2_000
# The samples' drift (generate_samples.CHURN_SEVERITY, batches 5-9) over the last ten
# batches, which stay at full severity: the degradation a QualityAlarm would retrain on.
DRIFT = (0.3, 0.5, 0.7, 0.85, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
BUCKET = "modelwatch-bench-retrain"
ACTUALS_TABLE = "bench-retrain-actuals"
LEDGER_TABLE = "bench-retrain-ledger"
PHASES = ("gather", "fit", "score", "write")


def severity(index: int) -> float:
    drifted = index - (BATCHES - len(DRIFT))
    return DRIFT[drifted] if drifted >= 0 else 0.0


def load_scenario(endpoint_url: str, now: datetime) -> tuple[str, datetime]:
    """The batches, ledger items and labels in moto; returns the topic ARN and the degradation start."""
    import boto3
    import numpy as np
    from generate_samples import CLASSIFICATION_SEED, _churn_features, _churn_labels  # beside this script

    from modelwatch.actuals import write_actuals
    from modelwatch.ledger import BatchLedger, content_digest
    from modelwatch.results import BatchObject

    s3 = boto3.client("s3", endpoint_url=endpoint_url)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url)
    sns = boto3.client("sns", endpoint_url=endpoint_url)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for table, key_name in ((ACTUALS_TABLE, "record_id"), (LEDGER_TABLE, "id")):
        dynamodb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": key_name, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key_name, "AttributeType": "S"}],
        )
    topic_arn = sns.create_topic(Name="bench-retrain-alerts")["TopicArn"]
    rng = np.random.default_rng(CLASSIFICATION_SEED)
    ledger = BatchLedger(dynamodb, LEDGER_TABLE)
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=BATCHES)
    labels: list[tuple[str, Any, str | None]] = []
    for index in range(BATCHES):
        features = _churn_features(rng, ROWS_PER_BATCH, severity(index))
        target = _churn_labels(rng, features, severity(index))
        ids = [f"rt{index:02d}-r{row:05d}" for row in range(ROWS_PER_BATCH)]
        features.insert(0, "record_id", ids)
        body = features.to_csv(index=False).encode()
        key = f"incoming/retrain-bench-{index:02d}.csv"
        version = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]
        batch = BatchObject(BUCKET, key, version_id=version)
        claim = ledger.claim(batch, content_digest(body), "bench")
        event_time = first + timedelta(hours=index, minutes=5)
        ledger.mark_published(claim, batch, event_time.isoformat())
        labels.extend((record_id, int(label), None) for record_id, label in zip(ids, target, strict=True))
    write_actuals(dynamodb, ACTUALS_TABLE, labels)
    return topic_arn, first + timedelta(hours=BATCHES - len(DRIFT))


def run_child(topic_arn: str, since: datetime) -> None:
    """In the fresh process: one retrain, its phases timed, then its peak memory."""
    import boto3

    from modelwatch import retraining
    from modelwatch.config import RetrainConfig
    from modelwatch.model_bundle import load_bundle

    spent = dict.fromkeys(PHASES, 0.0)
    running: list[list[float]] = []  # per active phase: [started, time spent in phases it called]

    def timed(phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            running.append([time.perf_counter(), 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                started, inner = running.pop()
                elapsed = time.perf_counter() - started
                spent[phase] += elapsed - inner
                if running:
                    running[-1][1] += elapsed

        return wrapper

    retraining.gather_labeled_window = timed("gather", retraining.gather_labeled_window)
    retraining.fit_challenger = timed("fit", retraining.fit_challenger)
    retraining.score = timed("score", retraining.score)
    for method in ("_write_candidate", "_record", "_announce"):
        setattr(retraining.Retrainer, method, timed("write", getattr(retraining.Retrainer, method)))

    bundle = load_bundle(MODEL_DIR)
    loaded_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config = RetrainConfig(
        model_dir=MODEL_DIR,
        actuals_table=ACTUALS_TABLE,
        ledger_table=LEDGER_TABLE,
        bucket=BUCKET,
        alert_topic_arn=topic_arn,
    )
    retrainer = retraining.Retrainer(
        config, bundle, s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"), sns=boto3.client("sns")
    )
    started = time.perf_counter()
    decision = retrainer.retrain(since=since)
    total = time.perf_counter() - started
    phases, peak_kib = dict(spent), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "decision": decision.decision,
                "reason": decision.reason,
                "labeled_rows": decision.window.get("labeled_rows"),
                "holdout_rows": decision.holdout.get("rows"),
                "windows": [(w.name, w.rows, w.quality) for w in decision.windows],
                "phases_s": phases,
                "total_s": total,
                "loaded_mib": loaded_kib / 1024,  # Linux: ru_maxrss in KiB
                "peak_mib": peak_kib / 1024,
                "window_mib": decision_window_mib(retrainer),
            }
        )
    )


def decision_window_mib(retrainer: Any) -> float:
    """What the labeled window's frame takes (a second gather, untimed: for the report only)."""
    from modelwatch.retraining import gather_labeled_window

    window = gather_labeled_window(
        s3=retrainer.s3,
        dynamodb=retrainer.dynamodb,
        config=retrainer.config,
        metadata=retrainer.bundle.metadata,
        now=datetime.now(UTC),
    )
    return float(window.features.memory_usage(deep=True).sum()) / 2**20


def template_limits() -> tuple[int, int]:
    """The RetrainFunction's memory (FunctionMemorySizeMB's default) and timeout in template.yaml."""
    from modelwatch.local.template import load_template

    template = load_template(ROOT / "template.yaml")
    memory = int(template["Parameters"]["FunctionMemorySizeMB"]["Default"])
    timeout = int(template["Resources"]["RetrainFunction"]["Properties"]["Timeout"])
    return memory, timeout


def bench_retrain() -> dict[str, Any]:
    from modelwatch.local.demo import ensure_sample_model
    from modelwatch.local.moto_server import start_moto_server

    ensure_sample_model(MODEL_DIR, ROOT / "template.yaml")
    aws = start_moto_server()
    environment = {
        **os.environ,
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(environment)
    try:
        started = time.perf_counter()
        topic_arn, since = load_scenario(aws.endpoint_url, datetime.now(UTC))
        loading = time.perf_counter() - started
        child = subprocess.run(
            [sys.executable, __file__, "--child", topic_arn, since.isoformat()],
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"the retrain child failed:\n{child.stderr}")
        result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        aws.stop()
    memory_mb, timeout_s = template_limits()
    phases = result["phases_s"]
    print(
        f"\nretrain: {result['labeled_rows']:,} labeled rows ({BATCHES} batches of {ROWS_PER_BATCH:,} "
        f"in moto, loaded in {loading:.0f} s), holdout {result['holdout_rows']:,} rows, "
        f"decision {result['decision']}"
    )
    for name, rows, quality in result["windows"]:
        score = "not fitted" if quality is None else f"{quality:.4f}"
        print(f"  window {name}: {rows:,} training rows, quality on the holdout {score}")
    print(
        f"  time {result['total_s']:.1f} s: "
        + ", ".join(f"{phase} {phases[phase]:.1f} s" for phase in PHASES)
        + f" (other {result['total_s'] - sum(phases.values()):.1f} s)"
    )
    print(
        f"  peak memory (ru_maxrss of the fresh process) {result['peak_mib']:.0f} MiB "
        f"({result['loaded_mib']:.0f} MiB after imports and loading the model; the window's "
        f"features take {result['window_mib']:.0f} MiB as a DataFrame)"
    )
    fits = result["peak_mib"] * 1.048576 < memory_mb and result["total_s"] < timeout_s
    print(
        f"  RetrainFunction in template.yaml: {memory_mb} MB, timeout {timeout_s} s: "
        + ("fits" if fits else "DOES NOT FIT")
        + f" ({result['peak_mib'] * 1.048576 / memory_mb:.0%} of the memory, "
        f"{result['total_s'] / timeout_s:.0%} of the timeout on this machine)"
    )
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        run_child(sys.argv[2], datetime.fromisoformat(sys.argv[3]))
    else:
        bench_retrain()
