"""Handlers against in-process moto, with resources built from template.yaml."""

from __future__ import annotations

import importlib.util
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from modelwatch.aws import reset_clients
from tests.events import load_event
from tests.lambda_context import LambdaContext  # noqa: F401  re-exported for tests that import it from here
from tests.template_resources import create_table, handler_environment, resource

ROOT = Path(__file__).resolve().parents[2]
BUCKET = load_event("batch-monitor-s3-put")["Records"][0]["s3"]["bucket"]["name"]


def load_handler(function_dir: str) -> ModuleType:
    """A fresh copy of functions/<dir>/app.py, as a cold Lambda start would import it."""
    path = ROOT / "functions" / function_dir / "app.py"
    spec = importlib.util.spec_from_file_location(f"{function_dir}_app_{uuid.uuid4().hex}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def s3_event(key: str, name: str = "batch-monitor-s3-put") -> dict[str, Any]:
    """The sample event with another (already URL-encoded) key."""
    event = load_event(name)
    event["Records"][0]["s3"]["object"]["key"] = key
    return event


@dataclass
class Stack:
    s3: Any
    dynamodb: Any
    cloudwatch: Any
    model_dir: Path
    actuals_table: str
    ledger_table: str
    prediction_log_table: str = ""

    def put(self, key: str, body: bytes | str, **extra: Any) -> None:
        self.s3.put_object(
            Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body, **extra
        )

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def report(self, key: str) -> dict[str, Any]:
        import json

        relative = key.removeprefix("incoming/")
        return json.loads(
            self.s3.get_object(Bucket=BUCKET, Key=f"results/{relative}/report.json")["Body"].read()
        )

    def predictions(self, key: str):
        import pandas as pd

        # The key's newest report names its version's predictions.
        location = self.report(key)["outputs"]["predictions"].removeprefix(f"s3://{BUCKET}/")
        body = self.s3.get_object(Bucket=BUCKET, Key=location)["Body"].read()
        return pd.read_csv(io.BytesIO(body), compression="gzip", dtype={"record_id": str})

    def statistic(
        self,
        metric: str,
        statistics: tuple[str, ...] = ("Sum", "SampleCount", "Average"),
        model_name: str = "churn-test",
    ) -> dict[str, float] | None:
        now = datetime.now(UTC)
        response = self.cloudwatch.get_metric_statistics(
            Namespace="ModelWatch",
            MetricName=metric,
            Dimensions=[{"Name": "ModelName", "Value": model_name}],
            StartTime=now - timedelta(hours=3),
            EndTime=now + timedelta(hours=3),
            Period=6 * 3600,
            Statistics=list(statistics),
        )
        points = response["Datapoints"]
        assert len(points) <= 1
        return points[0] if points else None

    def put_actuals(self, actuals: dict[str, Any]) -> None:
        table = boto3.resource("dynamodb").Table(self.actuals_table)
        with table.batch_writer() as writer:
            for record_id, actual in actuals.items():
                writer.put_item(Item={"record_id": record_id, "actual": actual})


@pytest.fixture(scope="session", autouse=True)
def cloudwatch_matches_metrics_exactly():
    """In-process moto with the embedded server's CloudWatch correction: a query for the
    dimensions {ModelName} reads that metric only, not also {ModelName, Clock}."""
    from modelwatch.local.moto_tuning import use_exact_metric_matching

    use_exact_metric_matching()


@pytest.fixture
def aws(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    reset_clients()
    with mock_aws():
        yield
    reset_clients()


@pytest.fixture
def stack(aws, monkeypatch, classifier_dir) -> Stack:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    versioning = resource("IngestBucket")["Properties"].get("VersioningConfiguration")
    if versioning:
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration=versioning)
    dynamodb = boto3.client("dynamodb")
    actuals = create_table(dynamodb, "ActualsTable", "modelwatch-actuals")
    ledger = create_table(dynamodb, "BatchLedgerTable", "modelwatch-ledger")
    prediction_log = create_table(dynamodb, "PredictionLogTable", "modelwatch-prediction-log")
    # The batch monitor's environment as template.yaml declares it (Globals merged, parameter
    # defaults), the table references resolved to the moto tables above, plus the actuals
    # loader's own; where both functions set a variable, they set the same value.
    environment = handler_environment(
        "BatchMonitorFunction",
        {"ActualsTable": actuals, "BatchLedgerTable": ledger, "PredictionLogTable": prediction_log},
    )
    loader = handler_environment("ActualsLoaderFunction", {"ActualsTable": actuals})
    join = handler_environment(
        "LabelJoinFunction",
        {"ActualsTable": actuals, "BatchLedgerTable": ledger, "PredictionLogTable": prediction_log},
    )
    for other in (loader, join):
        shared = other.keys() & environment.keys()
        assert all(other[name] == environment[name] for name in shared), "the functions' environments differ"
        environment.update(other)
    # The model layer's mount point (/opt/model) is the session's test model.
    environment["MODEL_DIR"] = str(classifier_dir)
    # Empty, so metrics and reports carry the test model's own name (churn-test), which the
    # tests check; the template's ModelName default names the sample model instead.
    environment["MODEL_NAME"] = ""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Stack(
        s3=s3,
        dynamodb=dynamodb,
        cloudwatch=boto3.client("cloudwatch"),
        model_dir=classifier_dir,
        actuals_table=actuals,
        ledger_table=ledger,
        prediction_log_table=prediction_log,
    )
