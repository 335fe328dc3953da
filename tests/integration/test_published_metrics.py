"""Every template alarm on a model metric watches a metric the batch monitor really publishes.

A misspelt metric name leaves an alarm in INSUFFICIENT_DATA (or, for staleness, in ALARM)
forever, and no deployment step complains. The names are what CloudWatch holds after the
handler ran on a scored batch and on a rejected one, not what the source code spells.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from tests.integration.conftest import load_handler, s3_event
from tests.lambda_context import LambdaContext
from tests.template_resources import load_template, parameter_defaults

SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles" / "classification"


def metric_name(value: Any) -> str:
    """An alarm's MetricName with the parameters' defaults: a name, a Ref or a Sub of parameters."""
    if isinstance(value, str):
        return value
    defaults = parameter_defaults()
    if "Ref" in value:
        return str(defaults[value["Ref"]])
    return re.sub(r"\$\{([^}]+)\}", lambda match: str(defaults[match.group(1)]), value["Fn::Sub"])


def test_alarms_on_model_metrics_watch_metrics_the_batch_monitor_publishes(
    stack, monkeypatch, sample_churn_model_dir
):
    # Given the sample model: unlike the tests' small model it has a drift reference sample,
    # so the drift metrics are published too
    monkeypatch.setenv("MODEL_DIR", str(sample_churn_model_dir))
    actuals = pd.read_csv(SAMPLES / "actuals.csv", dtype={"record_id": str})
    stack.put_actuals({row.record_id: int(row.churned) for row in actuals.itertuples()})
    stack.put("incoming/scored.csv", (SAMPLES / "batches" / "batch-01.csv").read_bytes())
    stack.put("incoming/rejected.csv", "record_id,unrelated\nr-1,1\n")

    # When the batch monitor processes a batch it scores and one it rejects
    handler = load_handler("batch_monitor")
    for key in ("incoming/scored.csv", "incoming/rejected.csv"):
        handler.lambda_handler(s3_event(key), LambdaContext())
    assert stack.report("incoming/scored.csv")["status"] == "ok"
    assert stack.report("incoming/rejected.csv")["status"] == "rejected"

    # Then every alarm in the metrics namespace watches one of the metrics CloudWatch now holds
    namespace = parameter_defaults()["MetricsNamespace"]
    published = {
        metric["MetricName"]
        for page in stack.cloudwatch.get_paginator("list_metrics").paginate(Namespace=namespace)
        for metric in page["Metrics"]
    }
    template = load_template()
    watched = {}
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm" and properties["Namespace"] == {
            "Ref": "MetricsNamespace"
        }:
            watched[logical_id] = metric_name(properties["MetricName"])
    assert {"QualityAlarm", "EstimatedQualityAlarm", "DriftAlarm"} <= set(watched)  # the model alarms
    # UnknownLabels comes from the actuals loader (read back in test_actuals_loading.py).
    loader_metrics = {"UnknownLabels"}
    unpublished = {
        alarm: metric
        for alarm, metric in watched.items()
        if metric not in published and metric not in loader_metrics
    }
    assert not unpublished, f"alarms watching metrics the batch monitor never published: {unpublished}"
