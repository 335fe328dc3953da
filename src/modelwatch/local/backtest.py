"""Batches through the local cloud on a virtual clock: the core of `replay` and `demo`.

Batch i is stamped (object metadata ``batch-time``) at start + i x Period of the template's
alarms, and the alarms are evaluated at the end of that period, so each batch is one
alarm period and CloudWatch's M-out-of-N logic plays out over the sequence exactly as it
would over that many real periods. The start is aligned to a period boundary and chosen
so the last period has ended by now: every stamp is in the past and within CloudWatch's
two-week window, so the batch monitor keeps it instead of falling back to upload time.
The functions run on the replay's clock (modelwatch.clock), so a batch is processed at
its period's start, on time, as it would have been live.

Labels over time: the actuals of batch i (the rows of the actuals files whose ids batch i
holds) are uploaded under actuals/ at the start of period i + labels delay, before that
period's batch; the rows of no batch at the start of the first period. With a delay the
periods go on after the last batch until every load has happened. After each upload
the DynamoDB streams are drained, so whatever the new labels trigger has run before the
period's alarms are evaluated. Each period's events and alarm states are recorded.

Model events: what the retrain function decided (its records under models/decisions/)
and what promotion and rollback did (models/promotions/) become ``model_events`` when
they appear. They are stamped with the virtual time the replay saw them appear (the end
of the period whose alarm delivery caused them), because the functions stamp their own
records with the wall clock, which a replay does not move.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelwatch.config import INCOMING_PREFIX, MODELS_PREFIX, RESULTS_PREFIX
from modelwatch.errors import UserError
from modelwatch.local.cloud import Alert, LocalCloud, VirtualClock
from modelwatch.local.label_files import LabelFile, LabelSchedule, split_actuals
from modelwatch.local.streams import StreamDelivery
from modelwatch.model_bundle import load_metadata
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
    # Over every label received by the end of the replay (late labels update the batch's report).
    final_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def model_version(self) -> str | None:
        """The model version that scored the batch, as its report names it."""
        model = self.report.get("model")
        return model.get("version") if isinstance(model, dict) else None

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "rows": self.rows,
            "labeled_rows": self.labeled_rows,
            "metrics": self.metrics,
            "final_metrics": self.final_metrics,
            "model_version": self.model_version,
            "drift": self.drift,
            "alarms": self.alarms,
            "batch_time": self.batch_time.isoformat(),
            "evaluated_at": self.evaluated_at.isoformat(),
        }


@dataclass
class PeriodResult:
    """One alarm period of a replay: what happened in it, and the alarms' states at its end."""

    index: int
    start: datetime
    events: list[str] = field(default_factory=list)
    alarms: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "events": self.events, "alarms": self.alarms}


# Said (printed and in the replay file) when no subscription of the stack reaches a person:
# only with AllowNoAlertChannel=true, since the template's rule refuses a stack without one.
NO_CHANNEL = (
    "no alert channel is configured (AllowNoAlertChannel=true): alarms change state but only an "
    "endpoint of your own subscribed to the AlertTopic would be told; pass "
    "--param AlertEmail=you@example.com and/or --param SlackWebhookSecretName=<secret name> "
    "to see what people would receive"
)

# Said when a replay has no --actuals: LabelsStaleAlarm is in ALARM throughout, as it would be
# over a deployed model whose labels never come.
NO_LABELS = (
    "no --actuals: no label is joined to a prediction, so LabelsStaleAlarm is in ALARM, as it would "
    "be in AWS; a model that never gets labels deploys with --param LabelStalenessMinutes=0"
)

# Where the functions record what happened to the model: the retrain function's decisions
# (modelwatch.retraining) and promotion's promotions and rollbacks, one JSON object each.
DECISIONS_PREFIX = f"{MODELS_PREFIX}decisions/"
PROMOTIONS_PREFIX = f"{MODELS_PREFIX}promotions/"
# A retrain decision as a model event: a candidate is a retrained model; a challenger that
# was not better is not promoted; a refusal fitted nothing.
DECISION_EVENTS = {
    "candidate": "retrained",
    "not_better": "not_promoted",
    "refused": "refused",
    "deferred": "retrain_deferred",
}


def model_event(key: str, record: dict[str, Any], at: datetime, bucket: str) -> dict[str, Any]:
    """One ``model_events[]`` entry (SPEC "The replay file") from a decision or promotion record.

    ``version`` is the model the event is about: the retrained candidate, the promoted or
    rolled-back-to model (none when a challenger was not kept); ``from_version`` the champion
    it was compared with or replaced.
    """
    holdout: dict[str, Any] = record.get("holdout") or {}
    if key.startswith(DECISIONS_PREFIX):
        decision = str(record.get("decision", ""))
        event = DECISION_EVENTS.get(decision, decision)
        version, from_version = record.get("challenger_version"), record.get("champion_version")
        champion, challenger = record.get("champion_metrics"), record.get("challenger_metrics")
        recorded_at = record.get("decided_at")
    else:
        event = str(record.get("event", ""))
        version, from_version = record.get("to_version"), record.get("from_version")
        champion, challenger = holdout.get("champion"), holdout.get("challenger")
        recorded_at = record.get("time")
    return {
        "time": at.isoformat(),
        "event": event,
        "version": version,
        "from_version": from_version,
        "holdout": {
            "rows": holdout.get("rows", 0),
            "champion": champion or {},
            "challenger": challenger or {},
        },
        "reason": record.get("reason"),
        "record": f"s3://{bucket}/{key}",
        "recorded_at": recorded_at,  # the function's own (wall-clock) time
    }


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
        on_period: Callable[[PeriodResult], None] | None = None,
        on_event: Callable[[PeriodResult, str], None] | None = None,
    ):
        if not isinstance(cloud.clock, VirtualClock):
            raise TypeError("a backtest needs the local cloud on a VirtualClock")
        self.cloud = cloud
        self.clock: VirtualClock = cloud.clock
        self.on_batch = on_batch or (lambda result: None)  # after the alarms were evaluated
        self.on_processed = on_processed or (lambda result: None)  # before: the batch's own numbers
        self.on_period = on_period or (lambda period: None)  # when a period's alarms were evaluated
        self.on_event = on_event or (lambda period, event: None)  # as each event happens
        self.results: list[BatchResult] = []
        self.periods: list[PeriodResult] = []
        self.model_events: list[dict[str, Any]] = []
        self._model_records_seen: set[str] = set()

    def load_actuals(self, path: Path) -> None:
        """Upload a whole actuals file under actuals/ (as it is named) through the actuals loader."""
        self._load_labels(LabelFile(path.name, path.read_bytes(), 0), source=path)

    def _load_labels(self, part: LabelFile, *, source: Path | None = None, event: str | None = None) -> None:
        key = ACTUALS_PREFIX + part.name
        dispatch = self.cloud.upload(key, part.body)
        if event:
            self._event(event)
        if not dispatch.invocations:
            raise UserError(f"no function of the template takes {key!r}: it has no actuals trigger")
        failed = [i for i in dispatch.invocations if not i.ok]
        if failed:
            raise UserError(
                f"loading {source or key} failed: {failed[0].error} (see the function log under "
                f"{self.cloud.runtime.log_dir})"
            )
        self._drain_streams()

    def _drain_streams(self) -> None:
        """Deliver every pending stream record; say in the period's events what that did."""
        deliveries = self.cloud.drain_streams()
        for event in stream_events(deliveries):
            self._event(event)

    def _event(self, text: str) -> None:
        """Something that happened in the current period (none before the first: demo's preload)."""
        if self.periods:
            self.periods[-1].events.append(text)
            self.on_event(self.periods[-1], text)

    def run(
        self,
        batch_paths: list[Path],
        *,
        actuals: list[Path] | None = None,
        labels_delay_periods: int = 0,
        start: datetime | None = None,
    ) -> list[BatchResult]:
        """Replay the batches one per alarm period, loading ``actuals`` ``labels_delay_periods`` late."""
        if labels_delay_periods < 0:
            raise UserError("the labels delay is a number of alarm periods, 0 or more")
        period = alarm_period_seconds(self.cloud)
        keys = incoming_keys(batch_paths)
        schedule = LabelSchedule([], {})
        if actuals:
            metadata = load_metadata(self.cloud.model_dir)
            schedule = split_actuals(list(actuals), list(zip(batch_paths, keys, strict=True)), metadata)
        due: dict[int, list[tuple[str, LabelFile]]] = {}
        for index, parts in sorted(schedule.by_batch.items()):
            name = Path(batch_paths[index]).name
            due.setdefault(index + labels_delay_periods, []).extend((name, part) for part in parts)
        count = max([len(batch_paths), *(p + 1 for p in due)])
        start = start or virtual_start(period, count)
        for index in range(count):
            moment = start + timedelta(seconds=index * period)
            self.clock.set(moment)
            self.periods.append(PeriodResult(index, moment))
            if index == 0:
                for part in schedule.unbatched:
                    self._load_labels(
                        part, event=f"loaded labels of no batch from {part.name} ({part.rows} rows)"
                    )
            for batch_name, part in due.get(index, []):
                self._load_labels(part, event=f"loaded labels of {batch_name} ({part.rows} rows)")
            result = None
            if index < len(batch_paths):
                result = self._upload_batch(index, batch_paths[index], keys[index], moment, period)
                self.results.append(result)
            self._end_period(moment + timedelta(seconds=period), result)
        self._read_final_metrics()
        return self.results

    def _upload_batch(
        self, index: int, path: Path, key: str, batch_time: datetime, period: int
    ) -> BatchResult:
        import time

        started = time.perf_counter()
        dispatch = self.cloud.upload(key, path.read_bytes(), metadata={"batch-time": batch_time.isoformat()})
        seconds = time.perf_counter() - started
        self._event(f"uploaded {path.name}")
        self._drain_streams()
        report = self._report(dispatch.bucket, key, dispatch)
        result = BatchResult(
            index=index,
            key=key,
            batch_time=batch_time,
            evaluated_at=batch_time + timedelta(seconds=period),
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
        return result

    def _end_period(self, end: datetime, result: BatchResult | None) -> None:
        """Evaluate the alarms as the period ends; the period's batch (if any) gets their states."""
        self.clock.set(end)
        self._drain_streams()  # whatever was written without a drain (a function's own writes)
        alerts_before = len(self.cloud.alerts)
        runs = self.cloud.evaluate_alarms(end)
        # The template's schedules (the retrain function's hourly look at a deferred retrain)
        # after the alarms, whose deliveries may have deferred one.
        self.cloud.run_schedules(end)
        states = self.cloud.alarm_states()
        current = self.periods[-1]
        current.alarms = states
        for run in runs:
            if run.changed:
                name = self.cloud.stack.alarm_logical_id(run.alarm.name) or run.alarm.name
                self._event(f"{name} {run.evaluation.previous_state} -> {run.evaluation.state}")
        self._collect_model_events(end)
        if result is not None:
            result.alarms = states
            result.alerts = self.cloud.alerts[alerts_before:]
            self.on_batch(result)
        self.on_period(current)

    def _collect_model_events(self, at: datetime) -> None:
        """The model records that appeared since the last look, as model events at ``at``."""
        s3 = self.cloud.clients.s3
        ingest = self.cloud.stack.resources.get("IngestBucket")  # where models/ lives
        if ingest is None:
            return
        bucket = str(ingest.ref)
        new: list[str] = []
        for prefix in (DECISIONS_PREFIX, PROMOTIONS_PREFIX):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                new.extend(
                    item["Key"]
                    for item in page.get("Contents", [])
                    if item["Key"].endswith(".json") and item["Key"] not in self._model_records_seen
                )
        found = []
        for key in new:
            self._model_records_seen.add(key)
            record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            found.append(model_event(key, record, at, bucket))
        # Within one look, in the order the functions recorded them (both stamp their records).
        for event in sorted(found, key=lambda e: (str(e["recorded_at"] or ""), e["record"])):
            self.model_events.append(event)
            self._event(f"model {event['event']}" + (f" {event['version']}" if event["version"] else ""))

    def _read_final_metrics(self) -> None:
        """Each batch's metrics over every label received by now: its newest report, which the
        functions keep current as labels arrive; what was published beside the report stays."""
        for result in self.results:
            if result.status != "ok":
                continue
            bucket = self.cloud.bucket_for(result.key)
            report_key = BatchObject(bucket, result.key).newest_report_key
            body = self.cloud.clients.s3.get_object(Bucket=bucket, Key=report_key)["Body"].read()
            published = {
                k: v for k, v in result.metrics.items() if k not in (result.report.get("metrics") or {})
            }
            result.final_metrics = {**published, **(json.loads(body).get("metrics") or {})}

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
            # Counts are not measures of the batch (labeled_rows says what LabelsJoined does), and
            # LabelsJoined's period also holds what the label join published for other batches.
            if name not in (report.get("metrics") or {})
            and not name.startswith(("Batches", "Rows", "Labels"))
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
        self._collect_model_events(self.clock.now())  # written since the last period (on demand)
        return {
            **replay_document(self.results, self.cloud.alerts, self.periods, self.model_events),
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


def replay_document(
    results: list[BatchResult],
    alerts: list[Alert],
    periods: list[PeriodResult] | None = None,
    model_events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "batches": [result.as_json() for result in results],
        "periods": [period.as_json() for period in periods or []],
        "alerts": [alert.as_json() for alert in alerts],
        # In time order: each look appends what appeared since the previous one.
        "model_events": list(model_events or []),
    }


def stream_events(deliveries: list[StreamDelivery]) -> list[str]:
    """What stream deliveries did, one line per function: records handed over, records given up on."""
    events = []
    functions = dict.fromkeys(d.mapping.function_logical_id for d in deliveries)
    for function in functions:
        mine = [d for d in deliveries if d.mapping.function_logical_id == function]
        delivered = sum(len(d.sequence_numbers) for d in mine if d.invocation.ok)
        discarded = sum(len(d.sequence_numbers) for d in mine if d.discarded)
        table = mine[0].mapping.table_name
        line = f"{function} got {delivered} stream record(s) of {table} ({len(mine)} invocation(s))"
        if discarded:
            line += f"; failed on {discarded}, sent to the on-failure destination"
        events.append(line)
    return events
