"""Batches through the local cloud on a virtual clock: the core of `replay` and `demo`.

Batch i is stamped (object metadata ``batch-time``) at start + i x Period of the template's
alarms, and the alarms are evaluated at the end of that period, so each batch is one
alarm period and CloudWatch's M-out-of-N logic plays out over the sequence exactly as it
would over that many real periods. The start is aligned to a period boundary and chosen
so the last period has ended by now: every stamp is in the past and within CloudWatch's
two-week window, so the batch monitor keeps it instead of falling back to upload time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelwatch.config import INCOMING_PREFIX, RESULTS_PREFIX
from modelwatch.errors import UserError
from modelwatch.local.cloud import Alert, LocalCloud, VirtualClock
from modelwatch.results import BatchObject

ACTUALS_PREFIX = "actuals/"
# CloudWatch keeps datapoints up to two weeks old; leave a margin for the run itself.
MAX_SPAN = timedelta(days=13, hours=12)


@dataclass
class BatchResult:
    index: int
    key: str
    batch_time: datetime
    evaluated_at: datetime
    status: str
    rows: int | None
    labeled_rows: int | None
    metrics: dict[str, float]
    drift: dict[str, Any]
    alarms: dict[str, str]
    report: dict[str, Any]
    seconds: float
    alerts: list[Alert] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "rows": self.rows,
            "labeled_rows": self.labeled_rows,
            "metrics": self.metrics,
            "drift": self.drift,
            "alarms": self.alarms,
            "batch_time": self.batch_time.isoformat(),
            "evaluated_at": self.evaluated_at.isoformat(),
        }


# Said (printed and in the replay file) when no subscription of the stack reaches a person.
NO_CHANNEL = (
    "no alert channel is configured: alarms change state but nobody would be told; pass "
    "--param AlertEmail=you@example.com and/or --param SlackWebhookSecretName=<secret name>"
)

# The template parameter that sets the alarm period (SPEC "Alarms and alerts"); a batch per period.
PERIOD_PARAMETER = "AlarmPeriodSeconds"


def alarm_period_seconds(cloud: LocalCloud) -> int:
    """One batch per alarm period: the template's AlarmPeriodSeconds, else its shortest alarm period."""
    if cloud.stack.parameters.get(PERIOD_PARAMETER):
        return int(float(cloud.stack.parameters[PERIOD_PARAMETER]))
    periods = {alarm.period_seconds for alarm in cloud.stack.alarms.values()}
    return min(periods) if periods else 3600


def virtual_start(period_seconds: int, batches: int, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    end_epoch = int(now.timestamp()) // period_seconds * period_seconds
    start = datetime.fromtimestamp(end_epoch - batches * period_seconds, tz=UTC)
    if now - start > MAX_SPAN:
        raise UserError(
            f"{batches} batches of {period_seconds} s periods span more than CloudWatch's two "
            "weeks of metric history; replay fewer batches or pass a shorter "
            "--param AlarmPeriodSeconds=..."
        )
    return start


def incoming_keys(paths: list[Path]) -> list[str]:
    names = [path.name for path in paths]
    if len(set(names)) == len(names):
        return [INCOMING_PREFIX + name for name in names]
    return [f"{INCOMING_PREFIX}{index + 1:03d}/{path.name}" for index, path in enumerate(paths)]


class Backtest:
    def __init__(
        self,
        cloud: LocalCloud,
        *,
        on_batch: Callable[[BatchResult], None] | None = None,
        on_processed: Callable[[BatchResult], None] | None = None,
    ):
        if not isinstance(cloud.clock, VirtualClock):
            raise TypeError("a backtest needs the local cloud on a VirtualClock")
        self.cloud = cloud
        self.clock: VirtualClock = cloud.clock
        self.on_batch = on_batch or (lambda result: None)  # after the alarms were evaluated
        self.on_processed = on_processed or (lambda result: None)  # before: the batch's own numbers
        self.results: list[BatchResult] = []

    def load_actuals(self, path: Path) -> None:
        key = ACTUALS_PREFIX + path.name
        dispatch = self.cloud.upload(key, path.read_bytes())
        if not dispatch.invocations:
            raise UserError(f"no function of the template takes {key!r}: it has no actuals trigger")
        failed = [i for i in dispatch.invocations if not i.ok]
        if failed:
            raise UserError(
                f"loading {path} failed: {failed[0].error} (see the function log under "
                f"{self.cloud.runtime.log_dir})"
            )

    def run(self, batch_paths: list[Path], *, start: datetime | None = None) -> list[BatchResult]:
        period = alarm_period_seconds(self.cloud)
        start = start or virtual_start(period, len(batch_paths))
        for index, (path, key) in enumerate(zip(batch_paths, incoming_keys(batch_paths), strict=True)):
            self.results.append(self.run_batch(index, path, key, start, period))
            self.on_batch(self.results[-1])
        return self.results

    def run_batch(self, index: int, path: Path, key: str, start: datetime, period: int) -> BatchResult:
        import time

        batch_time = start + timedelta(seconds=index * period)
        evaluated_at = batch_time + timedelta(seconds=period)
        self.clock.set(batch_time)
        started = time.perf_counter()
        dispatch = self.cloud.upload(key, path.read_bytes(), metadata={"batch-time": batch_time.isoformat()})
        seconds = time.perf_counter() - started
        report = self._report(dispatch.bucket, key, dispatch)
        result = BatchResult(
            index=index,
            key=key,
            batch_time=batch_time,
            evaluated_at=evaluated_at,
            status=str(report.get("status", "error")),
            rows=report.get("rows"),
            labeled_rows=report.get("labeled_rows"),
            metrics={**self._published(report, batch_time, period), **(report.get("metrics") or {})},
            drift=report.get("drift") or {},
            alarms={},
            report=report,
            seconds=seconds,
        )
        self.on_processed(result)
        self.clock.set(evaluated_at)
        alerts_before = len(self.cloud.alerts)
        self.cloud.evaluate_alarms(evaluated_at)
        result.alarms = self.cloud.alarm_states()
        result.alerts = self.cloud.alerts[alerts_before:]
        return result

    def _report(self, bucket: str, key: str, dispatch: Any) -> dict[str, Any]:
        failed = [i for i in dispatch.invocations if not i.ok]
        if not dispatch.invocations:
            return {"status": "not_processed", "reason": f"no function of the template takes {key!r}"}
        if failed:
            return {"status": "error", "reason": failed[0].error}
        report_key = BatchObject(bucket, key).newest_report_key
        body = self.cloud.clients.s3.get_object(Bucket=bucket, Key=report_key)["Body"].read()
        return json.loads(body)

    def _published(self, report: dict[str, Any], batch_time: datetime, period: int) -> dict[str, float]:
        """Published metrics the report does not hold (DriftScore ...), read back from CloudWatch.

        The namespace and dimensions are those the template's alarms watch.
        """
        alarm = next(iter(self.cloud.stack.alarms.values()), None)
        wanted = [
            name
            for name in report.get("metrics_published") or []
            if name not in (report.get("metrics") or {}) and not name.startswith(("Batches", "Rows"))
        ]
        if alarm is None or not wanted:
            return {}
        values = {}
        for name in wanted:
            points = self.cloud.clients.cloudwatch.get_metric_statistics(
                Namespace=alarm.namespace,
                MetricName=name,
                Dimensions=[{"Name": n, "Value": v} for n, v in alarm.dimensions],
                StartTime=batch_time,
                EndTime=batch_time + timedelta(seconds=period),
                Period=period,
                Statistics=["Average"],
            )["Datapoints"]
            if points:
                values[name] = float(points[0]["Average"])
        return values

    def document(self) -> dict[str, Any]:
        """The replay file (SPEC "The replay file"): the batches so far, every alert, where alerts go.

        ``channels`` are the configured ones; ``no_channel`` is null when there is one, and
        otherwise says why ``alerts`` is empty.
        """
        channels = self.cloud.alert_channels()
        return {
            **replay_document(self.results, self.cloud.alerts),
            "channels": [channel.as_json() for channel in channels],
            "no_channel": None if channels else NO_CHANNEL,
        }

    def copy_results(self, destination: Path) -> int:
        """Everything the functions wrote under results/, as files under ``destination``."""
        copied = 0
        s3 = self.cloud.clients.s3
        for bucket in sorted({t.bucket for t in self.cloud.stack.s3_triggers}):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=RESULTS_PREFIX):
                for item in page.get("Contents", []):
                    target = destination / item["Key"][len(RESULTS_PREFIX) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
                    copied += 1
        return copied


def replay_document(results: list[BatchResult], alerts: list[Alert]) -> dict[str, Any]:
    return {
        "batches": [result.as_json() for result in results],
        "alerts": [alert.as_json() for alert in alerts],
    }
