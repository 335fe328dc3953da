"""Monitoring one batch: read, validate, predict, join actuals, measure, write, publish.

``BatchMonitor.process`` turns one S3 object version into exactly one report:

- ``ok``: scored, measured, written, published;
- ``rejected``: bad input (or the model failing on it). The report says why and what
  to do; the only datapoint is BatchesRejected;
- ``duplicate``: the same bytes as an earlier version of the key (``modelwatch.ledger``).
  The report names that version; nothing is published;
- AWS trouble (throttling, S3 errors) raises before any report, so Lambda retries the
  event and its dead-letter queue keeps it if the retries run out;
- a defect in modelwatch writes a ``failed`` report that says so, publishes nothing,
  and raises: the function's error alarm fires, and the event is retried, then kept.

Order of effects, all in ``process``: S3 GetObject; the ledger claim (DynamoDB
UpdateItem); DynamoDB BatchGetItem; S3 PutObject of the predictions; S3 PutObject of
report.json, the key's newest report and results/latest.json; the ledger's publish mark;
CloudWatch PutMetricData. Metrics go last and in one call, so a failure before them
leaves no partial metrics, a retry overwrites the files it already wrote, and the mark
keeps a retry after a successful PutMetricData from publishing again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from modelwatch.actuals import RequestStats, fetch_actuals
from modelwatch.batch_files import read_batch
from modelwatch.config import MonitorConfig
from modelwatch.errors import ActualsUnavailable, BatchRejected
from modelwatch.event_time import EventTime, resolve_event_time
from modelwatch.ledger import RETENTION_DAYS, BatchLedger, Claim, content_digest
from modelwatch.metrics import ROW_ADDITIVE_METRICS, MetricValue, plain_values
from modelwatch.model_bundle import ModelBundle
from modelwatch.prediction_log import PredictionLog
from modelwatch.promotion import CHAMPION_KEY, read_champion_pointer
from modelwatch.publishing import (
    EVENT_TIME_CLOCK,
    cloudwatch_accepts,
    metric_data,
    model_version_datum,
    publish_metrics,
)
from modelwatch.report import BatchReport, ModelIdentity, Rejection, Scored
from modelwatch.results import BatchObject, ResultStore
from modelwatch.scoring import Measurement, Scorer, predict
from modelwatch.validation import ValidatedBatch, validate_batch

logger = logging.getLogger(__name__)

# Reads the ``actual`` of each id that has one (ids without a label are absent).
ActualsReader = Callable[[Sequence[str], RequestStats], Mapping[str, Any]]


def dynamodb_actuals(client: Any, table: str) -> ActualsReader:
    return lambda ids, stats: fetch_actuals(client, table, ids, stats=stats)


class Stopwatch:
    """Milliseconds per step, for the report's ``timings_ms``."""

    def __init__(self) -> None:
        self.started = self.mark = time.perf_counter()
        self.timings_ms: dict[str, float] = {}

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.timings_ms[f"{step}_ms"] = (now - self.mark) * 1000
        self.mark = now

    def total(self) -> dict[str, float]:
        return {**self.timings_ms, "total_ms": (time.perf_counter() - self.started) * 1000}


class BatchMonitor:
    """The warm state (model, clients) and the flow of one batch."""

    def __init__(
        self,
        config: MonitorConfig,
        bundle: ModelBundle,
        store: ResultStore,
        read_actuals: ActualsReader,
        cloudwatch: Any,
        ledger: BatchLedger,
        prediction_log: PredictionLog,
        clock: Callable[[], datetime] | None = None,
    ):
        self.config = config
        self.bundle = bundle
        self.store = store
        self.read_actuals = read_actuals
        self.cloudwatch = cloudwatch
        self.ledger = ledger
        self.prediction_log = prediction_log
        self.clock = clock or (lambda: datetime.now(UTC))
        self.scorer = Scorer(bundle, config.min_labeled_rows, config.drift_threshold)
        self.model = ModelIdentity(config.model_name or bundle.metadata.name, bundle.metadata.version)
        # models/champion.json, read once per cold start (the first batch names the bucket).
        self._champion: tuple[dict[str, Any] | None] | None = None

    @classmethod
    def from_config(cls, config: MonitorConfig) -> BatchMonitor:
        """The batch-monitor function's warm state: model from the layer, one client per service."""
        from modelwatch.aws import client
        from modelwatch.model_bundle import load_bundle

        return cls(
            config,
            load_bundle(config.model_dir),
            store=ResultStore(client("s3")),
            read_actuals=dynamodb_actuals(client("dynamodb"), config.actuals_table),
            cloudwatch=client("cloudwatch"),
            # A batch stays in the ledger as long as its rows wait in the prediction log.
            ledger=BatchLedger(
                client("dynamodb"),
                config.ledger_table,
                retention_days=max(RETENTION_DAYS, config.prediction_log_days),
            ),
            prediction_log=PredictionLog(
                client("dynamodb"), config.prediction_log_table, config.prediction_log_days
            ),
        )

    def process(self, batch: BatchObject) -> BatchReport:
        watch = Stopwatch()
        now = self.clock()
        upload_time = now
        claim: Claim | None = None
        try:
            file = self.store.read_batch(batch, self.config.max_batch_bytes)
            upload_time = file.upload_time
            # An event without a version (a bucket without versioning, a hand-made
            # event) is the version read.
            batch = dataclasses.replace(batch, version_id=batch.version_id or file.version_id)
            claim = self.ledger.claim(batch, content_digest(file.body), self._model_key)
            if claim.duplicate_of is not None:
                return self._duplicate(batch, claim.duplicate_of, upload_time, now, watch)
            watch.lap("s3_read")
            frame = read_batch(file.body, batch.key, self.config.max_batch_bytes)
            validated = self._validate(frame, batch.key)
            event_time = resolve_event_time(
                frame, file.batch_time, self.bundle.metadata.timestamp_column, upload_time, now
            )
            watch.lap("read_validate")
            predictions = predict(self.bundle, validated.features, batch.key)
            watch.lap("predict")
            stats = RequestStats()
            actuals = self.read_actuals(validated.ids.tolist(), stats)
            watch.lap("actuals")
            measured = self.scorer.measure(validated, predictions, actuals)
            watch.lap("measure")
            table = self.scorer.predictions_table(validated, predictions, measured.actual_values)
            outputs = self.store.write_predictions(batch, table)
            # So a label that arrives later finds this batch (modelwatch.label_join).
            self.prediction_log.record(
                claim.item_id, event_time.moment.isoformat(), table, self.bundle.metadata.id_column
            )
            watch.lap("write")
            report = self._scored_report(batch, validated, event_time, measured, stats.requests, outputs)
            report.uploaded_at = upload_time.isoformat()
        except BatchRejected as rejection:
            # Codes and positions only: the reason may quote cell values (personal data).
            logger.warning("batch rejected", extra={"code": rejection.code, "detail": rejection.log_safe})
            report = self._unscored_report("rejected", batch, rejection, upload_time, now)
        except (ClientError, BotoCoreError, ActualsUnavailable):
            raise  # AWS trouble: Lambda retries the event, then the dead-letter queue keeps it
        except Exception as defect:
            logger.exception("batch failed with a defect in modelwatch")
            failure = BatchRejected(
                f"modelwatch could not process {batch.key!r}: {type(defect).__name__}: {defect}. "
                "This is a defect in modelwatch, not in the file: the event is retried, then kept in "
                "the dead-letter queue, and can be replayed once the defect is fixed (the function's "
                "log has the traceback)",
                code="internal_error",
            )
            report = self._unscored_report("failed", batch, failure, upload_time, now)
            report.timings_ms = watch.total()
            self.store.write_report(batch, report.to_dict())
            raise
        report.timings_ms = watch.total()
        self.store.write_report(batch, report.to_dict())
        if claim is None:
            # Rejected before its bytes were read (deleted, too large): the version is the content.
            claim = self.ledger.claim(batch, f"unread:{batch.version_id or batch.etag}", self._model_key)
        self._publish_once(claim, report)
        return report

    def _publish_once(self, claim: Claim, report: BatchReport) -> None:
        # The mark also settles the batch for the label join: where it is, when, and the
        # row-additive totals it published (a batch publishing nothing is settled too).
        totals = {
            name: (value.rows, value.row_sum)
            for name, value in report.published.items()
            if name in ROW_ADDITIVE_METRICS and value.rows is not None and value.row_sum is not None
        }
        live = report.scored.live if report.scored else True
        if (
            not self.ledger.mark_published(claim, report.batch, report.event_time, totals, live)
            or not report.published
        ):
            return  # an earlier attempt published it, or nothing to publish
        event_time = datetime.fromisoformat(report.event_time)
        by_version = (
            [model_version_datum(self.model.name, self.model.version, event_time)]
            if "BatchesProcessed" in report.published
            else []
        )
        try:
            publish_metrics(
                self.cloudwatch,
                self.config.metrics_namespace,
                metric_data(report.published, self.model.name, event_time)
                # The same row-additive quality metrics in the by-event-time series, which
                # the label join adds to at the batch's event time.
                + metric_data(
                    {name: value for name, value in report.published.items() if name in ROW_ADDITIVE_METRICS},
                    self.model.name,
                    event_time,
                    clock=EVENT_TIME_CLOCK,
                )
                + by_version,
            )
        except Exception:
            self.ledger.unmark_published(claim)  # so the retry publishes
            raise

    @property
    def _model_key(self) -> str:
        """The model part of the ledger's identity: after a new model version, the same
        bytes are a new batch (scored by the new model)."""
        return f"{self.model.name}@{self.model.version}"

    def _duplicate(
        self,
        batch: BatchObject,
        original: BatchObject,
        upload_time: datetime,
        now: datetime,
        watch: Stopwatch,
    ) -> BatchReport:
        logger.info("duplicate of an earlier version", extra={"duplicate_of": original.version_id})
        stamp = upload_time if cloudwatch_accepts(upload_time, now) else now
        report = BatchReport(
            status="duplicate",
            batch=batch,
            model=self.model,
            processed_at=self.clock().isoformat(),
            event_time=stamp.isoformat(),
            uploaded_at=upload_time.isoformat(),
            duplicate_of={
                "version_id": original.version_id,
                "report": f"s3://{original.bucket}/{original.report_key}",
                "note": "the same bytes as this earlier version of the key: counted once, with that "
                "version's results and metrics; nothing was published for this one",
            },
        )
        report.timings_ms = watch.total()
        # Only this version's report: the key's newest report keeps the original's results.
        self.store.write_report(batch, report.to_dict(), newest=False)
        return report

    # -- steps ----------------------------------------------------------------------------

    def _validate(self, frame: pd.DataFrame, key: str) -> ValidatedBatch:
        validated = validate_batch(frame, self.bundle.metadata, key, self.config.max_invalid_row_percent)
        if validated.features.empty:
            raise BatchRejected(
                f"no row of {key!r} is valid; see invalid_rows",
                code="no_valid_rows",
                invalid_rows=validated.invalid_rows,
            )
        return validated

    def _scored_report(
        self,
        batch: BatchObject,
        validated: ValidatedBatch,
        event_time: EventTime,
        measured: Measurement,
        actuals_requests: int,
        outputs: dict[str, str],
    ) -> BatchReport:
        rows_scored = len(measured.actual_values)
        notes = list(event_time.notes)
        if self.config.model_name and self.config.model_name != self.bundle.metadata.name:
            notes.append(
                f"metrics are published as ModelName={self.config.model_name!r} (the template's ModelName); "
                f"the model calls itself {self.bundle.metadata.name!r} in metadata.json"
            )
        published = dict(measured.published)
        mismatch = self._champion_mismatch(batch.bucket)
        if mismatch is not None:
            published["ChampionMismatch"] = MetricValue(1.0 if mismatch else 0.0)
            if mismatch:
                notes.append(mismatch)
        return BatchReport(
            status="ok",
            batch=batch,
            model=self.model,
            processed_at=self.clock().isoformat(),
            event_time=event_time.moment.isoformat(),
            uploaded_at="",
            # A backfill too old (or too far ahead) for CloudWatch publishes nothing.
            published=published if event_time.live else {},
            scored=Scored(
                event_time_source=event_time.source,
                notes=notes,
                rows=validated.rows_read,
                rows_scored=rows_scored,
                rows_invalid=validated.invalid_row_count,
                labeled_rows=measured.rows_labeled,
                label_coverage=measured.rows_labeled / rows_scored,
                metrics=plain_values({**measured.quality, **measured.estimated}),
                live=event_time.live,
                quality_metrics_withheld=measured.quality_withheld,
                invalid_rows=validated.invalid_rows,
                invalid_by_reason=validated.invalid_by_reason,
                data_quality=measured.findings,
                drift=measured.drift,
                estimated_performance=measured.estimation,
                actuals_requests=actuals_requests,
                outputs=outputs,
                reference=self._reference(),
            ),
        )

    def _champion_mismatch(self, bucket: str) -> str | None:
        """None before any promotion (nothing to compare); "" when the loaded model is the
        promoted champion; else the note saying it is not, and how to fix it.

        A `sam deploy` without ModelLayerVersionArn puts the built model layer back: the
        promotion is silently undone unless this says so (ChampionMismatch, its alarm)."""
        if self._champion is None:
            try:
                pointer, _ = read_champion_pointer(self.store.s3, bucket)
            except (ClientError, BotoCoreError) as problem:
                logger.warning("could not read the champion pointer", extra={"error": str(problem)})
                return None  # asked again with the next batch
            self._champion = (pointer,)
        pointer = self._champion[0]
        if pointer is None:
            return None
        if str(pointer.get("version")) == self.bundle.metadata.version:
            return ""
        logger.error(
            "the model layer does not hold the promoted champion",
            extra={"loaded": self.bundle.metadata.version, "champion": pointer.get("version")},
        )
        return (
            f"scored by model version {self.bundle.metadata.version}, but the promoted champion is "
            f"{pointer.get('version')} (s3://{bucket}/{CHAMPION_KEY}, since {pointer.get('since')}): a "
            "deploy without ModelLayerVersionArn put the built model back? Deploy with --parameter-overrides "
            f"ModelLayerVersionArn={pointer.get('layer_version_arn')}, or promote again"
        )

    def _reference(self) -> dict[str, Any]:
        config = self.config
        alarm = {"metric": config.quality_metric, "threshold": config.quality_threshold}
        alarm["comparison"] = config.quality_comparison
        reference: dict[str, Any] = {"metrics": self.bundle.baseline.get("reference_metrics", {})}
        if config.quality_metric and config.quality_threshold is not None:
            reference["quality_alarm"] = alarm
        return reference

    def _unscored_report(
        self,
        status: Any,
        batch: BatchObject,
        rejection: BatchRejected,
        upload_time: datetime,
        now: datetime,
    ) -> BatchReport:
        stamp = upload_time if cloudwatch_accepts(upload_time, now) else now
        return BatchReport(
            status=status,
            batch=batch,
            model=self.model,
            processed_at=self.clock().isoformat(),
            event_time=stamp.isoformat(),
            uploaded_at=upload_time.isoformat(),
            # A failed batch publishes nothing: the function's error alarm reports it.
            published={"BatchesRejected": MetricValue(1.0)} if status == "rejected" else {},
            rejection=Rejection(rejection.reason, rejection.code, dict(rejection.details)),
        )
