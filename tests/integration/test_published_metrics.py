"""Every template alarm and dashboard graph on a model metric shows a metric the batch
monitor really publishes, and the dashboard shows every one it publishes.

A misspelt metric name leaves an alarm in INSUFFICIENT_DATA (or, for staleness, in ALARM)
forever, or a dashboard graph empty, and no deployment step complains. The names are what
the handler sent to CloudWatch on a scored batch and on a rejected one, not what the
source code spells.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.aws_calls import recorded_aws_calls
from tests.cloudformation import dashboard_body, metric_widgets
from tests.integration.conftest import Stack, load_handler, s3_event
from tests.lambda_context import LambdaContext
from tests.model_fixtures import write_regressor
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
    # so the drift metrics are published too; and it was promoted (ChampionMismatch is
    # published once something was)
    monkeypatch.setenv("MODEL_DIR", str(sample_churn_model_dir))
    metadata = json.loads((sample_churn_model_dir / "metadata.json").read_text())
    stack.put("models/champion.json", json.dumps({"version": metadata["version"], "earlier": []}))
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


def regression_batch(stack: Stack, rows: int) -> bytes:
    """A batch for the tests' delivery-time regressor, every row with an actual."""
    rng = np.random.default_rng(41)
    frame = pd.DataFrame(
        {
            "record_id": [f"d-{index:04d}" for index in range(rows)],
            "distance_km": rng.uniform(0.5, 15, rows).round(2),
            "items": rng.integers(1, 8, rows),
        }
    )
    minutes = 10 + 3 * frame["distance_km"] + 1.5 * frame["items"] + rng.normal(0, 3, rows)
    stack.put_actuals(
        {
            record_id: Decimal(f"{value:.1f}")
            for record_id, value in zip(frame["record_id"], minutes, strict=True)
        }
    )
    return frame.to_csv(index=False).encode()


def test_dashboard_shows_every_model_metric_the_batch_monitor_publishes(
    stack, monkeypatch, sample_churn_model_dir, tmp_path
):
    # Given a classifier with a drift reference (the sample model), its actuals and a batch
    # it scores, a batch it rejects, and a regressor with a fully labeled batch
    actuals = pd.read_csv(SAMPLES / "actuals.csv", dtype={"record_id": str})
    stack.put_actuals({row.record_id: int(row.churned) for row in actuals.itertuples()})
    stack.put("incoming/scored.csv", (SAMPLES / "batches" / "batch-01.csv").read_bytes())
    stack.put("incoming/rejected.csv", "record_id,unrelated\nr-1,1\n")
    regressor_dir = tmp_path / "regressor"
    write_regressor(regressor_dir)
    stack.put("incoming/regression.csv", regression_batch(stack, 200))

    # When the batch monitor processes each, with every request it sends recorded
    with recorded_aws_calls() as calls:
        monkeypatch.setenv("MODEL_DIR", str(sample_churn_model_dir))
        classifier = load_handler("batch_monitor")
        for key in ("incoming/scored.csv", "incoming/rejected.csv"):
            classifier.lambda_handler(s3_event(key), LambdaContext())
        monkeypatch.setenv("MODEL_DIR", str(regressor_dir))
        load_handler("batch_monitor").lambda_handler(s3_event("incoming/regression.csv"), LambdaContext())
    assert [
        stack.report(f"incoming/{name}.csv")["status"] for name in ("scored", "rejected", "regression")
    ] == [
        "ok",
        "rejected",
        "ok",
    ]
    namespace = parameter_defaults()["MetricsNamespace"]
    published = {
        datum["MetricName"]
        for call in calls
        if call.operation == "PutMetricData" and call.params["Namespace"] == namespace
        for datum in call.params["MetricData"]
    }

    # Then whichever QualityMetric the template is deployed with, the dashboard graphs that
    # metric and every other metric the monitor published, and nothing it did not publish
    template = load_template()
    quality_metrics = set(template["Parameters"]["QualityMetric"]["AllowedValues"])
    assert quality_metrics <= published  # each choice is a metric of the classifier or the regressor
    for quality_metric in sorted(quality_metrics):
        shown = {
            metric[1]
            for properties in metric_widgets(dashboard_body(template, QualityMetric=quality_metric))
            for metric in properties["metrics"]
            if metric[0] == namespace
        }
        # The estimate of the chosen metric is graphed beside it, with no data where nothing
        # is estimated (LogLoss, regression metrics: see README); of the others, none.
        estimates = {f"Estimated{name}" for name in quality_metrics}
        chosen = {quality_metric, f"Estimated{quality_metric}"}
        # The label join's own metrics (published in tests/integration/test_label_join.py and
        # test_labels_feed.py) too; UnknownLabels the actuals loader publishes as well.
        late_labels = {
            "LabelsArrived",
            "LabelDelaySeconds",
            "LabelsWithoutPrediction",
            "LabelsOutsideEventTimeWindow",
            "UnknownLabels",
        }
        assert shown == (published - quality_metrics - estimates) | chosen | late_labels, quality_metric
