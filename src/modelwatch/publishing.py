"""Publishing a batch's metrics to CloudWatch in one all-or-nothing step.

Per-row metrics go out as StatisticValues (SampleCount = rows, Sum = sum of per-row
values, Minimum/Maximum of the per-row values), so
CloudWatch's Average over any period is the row-weighted value across batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from modelwatch.metrics import MetricValue

MAX_METRICS_PER_REQUEST = 1000  # PutMetricData's limit
EVENT_TIME_CLOCK = "EventTime"
# CloudWatch takes datapoints up to two weeks old and up to two hours ahead; the five
# minutes' margin covers the time between this check and the PutMetricData call.
OLDEST_ACCEPTED = timedelta(days=14) - timedelta(minutes=5)
NEWEST_ACCEPTED = timedelta(hours=2) - timedelta(minutes=5)
# Processing time minus the batch's event time, stamped at the processing time (not the
# event time like the batch's other metrics): EventTimeLagAlarm's metric.
EVENT_TIME_LAG_METRIC = "EventTimeLagSeconds"
# Also stamped at the processing time: the pipeline's own health, whose alarms look back
# one period (EvaluationPeriods 1). At the batch's event time, a feed a few hours behind
# would put them where those alarms never look: a missing baseline or a reverted champion
# unseen.
SIGNALS_UNAVAILABLE_METRIC = "SignalsUnavailable"
CHAMPION_MISMATCH_METRIC = "ChampionMismatch"
PROCESSING_TIME_METRICS = frozenset(
    {EVENT_TIME_LAG_METRIC, SIGNALS_UNAVAILABLE_METRIC, CHAMPION_MISMATCH_METRIC}
)
SECONDS_METRICS = frozenset({EVENT_TIME_LAG_METRIC})
# Labels joined to their predictions, stamped when they were joined: by the batch monitor
# for the labels a batch found at upload (stamped when the batch was uploaded), by the
# label join for those that came later (stamped when they were written). One metric for
# both paths, so LabelsStaleAlarm sees the labels feed whichever way it delivers, without
# metric math. Not RowsLabeled (stamped with the batch's event time, so a backfill would
# look like a live feed) nor LabelsArrived (the dashboard's "labeled later").
LABELS_JOINED_METRIC = "LabelsJoined"
UNKNOWN_LABELS_METRIC = "UnknownLabels"
# The batch monitor's metrics about the labels it found, stamped when the upload was announced.
UPLOAD_TIME_METRICS = frozenset({LABELS_JOINED_METRIC, UNKNOWN_LABELS_METRIC})
COUNT_METRICS = frozenset(
    {
        LABELS_JOINED_METRIC,
        UNKNOWN_LABELS_METRIC,
        "RowsScored",
        "RowsLabeled",
        "BatchesProcessed",
        "BatchesRejected",
        "DriftedFeatures",
        "LabelsArrived",
        "LabelsWithoutPrediction",
        "LabelsOutsideEventTimeWindow",
    }
)


def cloudwatch_accepts(timestamp: datetime, now: datetime) -> bool:
    """Whether PutMetricData would take a datapoint stamped ``timestamp`` at ``now``."""
    return now - OLDEST_ACCEPTED <= timestamp <= now + NEWEST_ACCEPTED


def metric_data(
    metrics: Mapping[str, MetricValue],
    model_name: str,
    timestamp: datetime,
    clock: str | None = None,
) -> list[dict[str, Any]]:
    """The PutMetricData MetricData entries for one batch. ``clock`` adds the dimension
    Clock (EVENT_TIME_CLOCK: the row-additive quality metrics by batch event time, late
    labels included, which the dashboard graphs; the alarms watch ModelName alone)."""
    dimensions = [{"Name": "ModelName", "Value": model_name}]
    if clock:
        dimensions.append({"Name": "Clock", "Value": clock})
    data = []
    for name, metric in metrics.items():
        datum: dict[str, Any] = {
            "MetricName": name,
            "Dimensions": dimensions,
            "Timestamp": timestamp,
            "Unit": "Count" if name in COUNT_METRICS else "Seconds" if name in SECONDS_METRICS else "None",
        }
        if metric.per_row and metric.rows:
            datum["StatisticValues"] = {
                "SampleCount": float(metric.rows),
                "Sum": metric.row_sum,
                "Minimum": metric.row_min,
                "Maximum": metric.row_max,
            }
        else:
            datum["Value"] = metric.value
        data.append(datum)
    return data


def model_version_datum(model_name: str, version: str, timestamp: datetime) -> dict[str, Any]:
    """BatchesProcessed by model version as well: the dashboard draws one line per version, so
    a promotion or rollback shows as the switch (the alarms watch ModelName alone)."""
    return {
        "MetricName": "BatchesProcessed",
        "Dimensions": [
            {"Name": "ModelName", "Value": model_name},
            {"Name": "ModelVersion", "Value": version},
        ],
        "Timestamp": timestamp,
        "Unit": "Count",
        "Value": 1.0,
    }


def publish_metrics(client: Any, namespace: str, data: list[dict[str, Any]]) -> int:
    """Send the entries; returns the number of PutMetricData requests made."""
    requests = 0
    for start in range(0, len(data), MAX_METRICS_PER_REQUEST):
        client.put_metric_data(Namespace=namespace, MetricData=data[start : start + MAX_METRICS_PER_REQUEST])
        requests += 1
    return requests
