"""Monitoring one batch: read, validate, predict, match actuals, measure, write, publish.

``BatchMonitor.process`` turns one S3 object into exactly one report, ``ok`` or
``rejected``. Data problems end in a rejected report and a BatchesRejected datapoint;
infrastructure problems (throttling, S3 errors) raise, so Lambda retries the event and
its dead-letter queue keeps it if the retries run out.

Order of effects: predictions, then report.json, then metrics. Metrics go last and in
one PutMetricData call, so a failure before them leaves no partial metrics and a retry
overwrites the files it already wrote.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from modelwatch import drift as drift_module
from modelwatch.actuals import RequestStats, fetch_actuals
from modelwatch.batch_files import read_batch
from modelwatch.config import LATEST_REPORT_POINTER, MonitorConfig
from modelwatch.errors import ActualsUnavailable, BatchRejected
from modelwatch.labels import LabelNormaliser
from modelwatch.metrics import MetricValue, classification_metrics, plain_values, regression_metrics
from modelwatch.model_bundle import ModelBundle
from modelwatch.publishing import metric_data, publish_metrics
from modelwatch.validation import ValidatedBatch, validate_batch

logger = logging.getLogger(__name__)

INCOMING_PREFIX = "incoming/"
# CloudWatch accepts datapoints up to two weeks old and up to two hours ahead.
OLDEST_ACCEPTED = timedelta(days=14) - timedelta(minutes=5)
NEWEST_ACCEPTED = timedelta(hours=2) - timedelta(minutes=5)


@dataclass(frozen=True)
class BatchObject:
    """The S3 object an event announced (the key already URL-decoded)."""

    bucket: str
    key: str
    version_id: str = ""  # set when the bucket is versioned: read exactly the version announced
    etag: str = ""

    def results_prefix(self, results_prefix: str) -> str:
        relative = self.key[len(INCOMING_PREFIX) :] if self.key.startswith(INCOMING_PREFIX) else self.key
        return f"{results_prefix}{relative}/"


@dataclass
class Outcome:
    """What processing a batch produced; ``report`` is what report.json holds."""

    report: dict[str, Any]
    metric_data: list[dict[str, Any]] = field(default_factory=list)
    actuals_requests: int = 0

    @property
    def status(self) -> str:
        return str(self.report["status"])


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time or epoch seconds as UTC; None for anything else (NaN, inf, text)."""
    text = str(value).strip()
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


class BatchMonitor:
    """Holds the warm state (model, clients) and processes batches."""

    def __init__(
        self,
        config: MonitorConfig,
        bundle: ModelBundle,
        s3: Any,
        dynamodb: Any,
        cloudwatch: Any,
        clock: Any = None,
    ):
        self.config = config
        self.bundle = bundle
        self.s3 = s3
        self.dynamodb = dynamodb
        self.cloudwatch = cloudwatch
        self.clock = clock or (lambda: datetime.now(UTC))
        classification = bundle.metadata.task == "classification"
        self.labels = LabelNormaliser(bundle.metadata.classes if classification else None)
        self.positive_label = bundle.metadata.positive_class

    @property
    def model_name(self) -> str:
        return self.config.model_name or self.bundle.metadata.name

    # -- the whole flow -------------------------------------------------------------------

    def process(self, batch: BatchObject) -> Outcome:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        now = self.clock()
        upload_time = now
        metadata_time: str | None = None
        try:
            body, upload_time, metadata_time = self._get_object(batch, timings)
            mark = time.perf_counter()
            frame = read_batch(body, batch.key, self.config.max_batch_megabytes * 1024 * 1024)
            validated = validate_batch(
                frame, self.bundle.metadata, batch.key, self.config.max_invalid_row_percent
            )
            if validated.features.empty:
                raise BatchRejected(
                    f"no row of {batch.key!r} is valid; see invalid_rows",
                    code="no_valid_rows",
                    invalid_rows=validated.invalid_rows,
                )
            timings["read_validate_ms"] = (time.perf_counter() - mark) * 1000
            event_time, time_source, notes = self._event_time(frame, metadata_time, upload_time, now)
            outcome = self._score(batch, validated, event_time, time_source, notes, timings)
        except BatchRejected as rejection:
            outcome = self._rejected(batch, rejection, upload_time, now)
        except (ClientError, BotoCoreError, ActualsUnavailable):
            raise  # AWS trouble: Lambda retries the event, then the dead-letter queue keeps it
        except Exception as problem:  # noqa: BLE001 - a retry would fail the same way
            logger.exception("batch failed with an unexpected error")
            failure = BatchRejected(
                f"modelwatch could not process {batch.key!r}: {type(problem).__name__}: {problem}. "
                "This is a defect in modelwatch or the model, not in the file; the event can be replayed "
                "once it is fixed (see the function's log for the traceback)",
                code="internal_error",
            )
            outcome = self._rejected(batch, failure, upload_time, now)
        outcome.report["timings_ms"] = {**timings, "total_ms": (time.perf_counter() - started) * 1000}
        self._write_report(batch, outcome.report)
        publish_metrics(self.cloudwatch, self.config.metrics_namespace, outcome.metric_data)
        return outcome

    # -- steps ----------------------------------------------------------------------------

    def _get_object(
        self, batch: BatchObject, timings: dict[str, float]
    ) -> tuple[bytes, datetime, str | None]:
        mark = time.perf_counter()
        limit_bytes = self.config.max_batch_megabytes * 1024 * 1024
        request = {"Bucket": batch.bucket, "Key": batch.key}
        if batch.version_id:
            request["VersionId"] = batch.version_id
        try:
            response = self.s3.get_object(**request)
        except ClientError as problem:
            code = problem.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NoSuchVersion"):
                raise BatchRejected(
                    f"s3://{batch.bucket}/{batch.key} was deleted before it could be read; upload it again "
                    "to have it scored",
                    code="object_missing",
                ) from None
            raise
        if response["ContentLength"] > limit_bytes:
            response["Body"].close()
            raise BatchRejected(
                f"{batch.key!r} is {response['ContentLength']:,} bytes, over the configured batch size limit "
                f"of {limit_bytes:,} bytes (MaxBatchMegabytes); split it into smaller batches",
                code="too_large",
            )
        body = response["Body"].read()
        timings["s3_read_ms"] = (time.perf_counter() - mark) * 1000
        metadata = {name.lower(): value for name, value in (response.get("Metadata") or {}).items()}
        return body, _utc(response["LastModified"]), metadata.get("batch-time")

    def _event_time(
        self, frame: pd.DataFrame, metadata_time: str | None, upload_time: datetime, now: datetime
    ) -> tuple[datetime, str, list[str]]:
        notes: list[str] = []
        candidate: datetime | None = None
        source = "upload time"
        if metadata_time:
            candidate = _parse_time(metadata_time)
            source = "batch-time metadata"
            if candidate is None:
                notes.append(
                    f"object metadata batch-time {metadata_time!r} is not an ISO 8601 time or epoch seconds"
                )
        column = self.bundle.metadata.timestamp_column
        if candidate is None and column and column in frame.columns:
            # Value by value: a column may mix ISO 8601 forms and epoch seconds.
            stamps = [stamp for stamp in map(_parse_time, frame[column].dropna()) if stamp is not None]
            if stamps:
                candidate, source = max(stamps), f"latest {column!r} value"
            else:
                notes.append(
                    f"no value of the timestamp column {column!r} is an ISO 8601 time or epoch seconds"
                )
        if candidate is not None and not (now - OLDEST_ACCEPTED <= candidate <= now + NEWEST_ACCEPTED):
            notes.append(
                f"event time {candidate.isoformat()} (from {source}) is outside what CloudWatch accepts "
                "(two weeks old to two hours ahead); metrics are stamped with the upload time"
            )
            candidate = None
        if candidate is not None:
            return candidate, source, notes
        if not (now - OLDEST_ACCEPTED <= upload_time <= now + NEWEST_ACCEPTED):
            # A batch replayed from the dead-letter queue weeks later: CloudWatch would
            # refuse its upload time too.
            notes.append(f"upload time {upload_time.isoformat()} is too old for CloudWatch; stamped now")
            return now, "processing time", notes
        return upload_time, "upload time", notes

    def _predict(self, features: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            predictions = np.asarray(self.bundle.estimator.predict(features))
            probabilities = (
                np.asarray(self.bundle.estimator.predict_proba(features), dtype=float)
                if self.bundle.has_probabilities
                else None
            )
        except Exception as problem:  # the estimator is user code: any failure rejects the batch
            raise BatchRejected(
                f"the model {self.bundle.metadata.name!r} could not score {key!r}: "
                f"{type(problem).__name__}: {problem}",
                code="model_error",
            ) from None
        return predictions, probabilities

    def _score(
        self,
        batch: BatchObject,
        validated: ValidatedBatch,
        event_time: datetime,
        time_source: str,
        notes: list[str],
        timings: dict[str, float],
    ) -> Outcome:
        metadata = self.bundle.metadata
        mark = time.perf_counter()
        predictions, probabilities = self._predict(validated.features, batch.key)
        timings["predict_ms"] = (time.perf_counter() - mark) * 1000

        mark = time.perf_counter()
        stats = RequestStats()
        raw_actuals = fetch_actuals(
            self.dynamodb,
            self.config.actuals_table,
            validated.ids.tolist(),
            threads=self.config.actuals_read_threads,
            stats=stats,
        )
        timings["actuals_ms"] = (time.perf_counter() - mark) * 1000
        actual_values = [self.labels.normalise(raw_actuals.get(record_id)) for record_id in validated.ids]
        labeled = np.array([value is not None for value in actual_values], dtype=bool)
        unknown_labels = sorted(
            {
                str(raw_actuals[i])
                for i, v in zip(validated.ids, actual_values, strict=True)
                if v is None and i in raw_actuals
            }
        )
        rows_scored = int(len(predictions))
        rows_labeled = int(labeled.sum())

        mark = time.perf_counter()
        metrics: dict[str, MetricValue] = {
            "BatchesProcessed": MetricValue(1.0),
            "RowsScored": MetricValue(float(rows_scored)),
            "RowsLabeled": MetricValue(float(rows_labeled)),
            "LabelCoverage": MetricValue(
                rows_labeled / rows_scored,
                row_sum=float(rows_labeled),
                rows=rows_scored,
                row_min=float(labeled.min()),
                row_max=float(labeled.max()),
            ),
        }
        quality: dict[str, MetricValue] = {}
        withheld = None
        if rows_labeled >= self.config.min_labeled_rows:
            y_true = np.array([value for value in actual_values if value is not None], dtype=object)
            if metadata.task == "classification":
                quality = classification_metrics(
                    y_true,
                    predictions[labeled],
                    probabilities[labeled] if probabilities is not None else None,
                    metadata.classes,
                    self.positive_label,
                )
            else:
                quality = regression_metrics(y_true.astype(float), predictions[labeled].astype(float))
        else:
            withheld = (
                f"{rows_labeled} labeled rows, fewer than MinLabeledRows={self.config.min_labeled_rows}; "
                "quality metrics are not published for this batch"
            )
        metrics.update(quality)
        timings["metrics_ms"] = (time.perf_counter() - mark) * 1000

        mark = time.perf_counter()
        drift_report: dict[str, Any] = {}
        findings = list(validated.findings)
        drift_baseline = self.bundle.baseline.get("drift")
        if drift_baseline:
            try:
                result = drift_module.compute_drift(
                    validated.features,
                    metadata,
                    predictions,
                    probabilities,
                    drift_baseline,
                    threshold=self.config.drift_threshold,
                    min_rows=self.config.drift_min_rows,
                )
            except Exception as problem:  # noqa: BLE001 - drift is advisory; the scores still count
                logger.exception("drift computation failed")
                drift_report = {"error": f"{type(problem).__name__}: {problem}; no drift metrics published"}
            else:
                metrics.update({name: MetricValue(float(value)) for name, value in result.metrics.items()})
                drift_report = result.report
                findings.extend(result.findings)
        else:
            drift_report = {"skipped": "baseline.json has no drift section; re-package the model"}
        timings["drift_ms"] = (time.perf_counter() - mark) * 1000
        if unknown_labels:
            findings.append(
                {
                    "feature_name": metadata.target,
                    "constraint_check_type": "unknown_labels",
                    "description": f"actuals hold labels the model does not know: {unknown_labels[:10]}; "
                    f"those rows are not counted as labeled (model classes: {list(metadata.classes)})",
                }
            )

        mark = time.perf_counter()
        outputs = self._write_predictions(batch, validated, predictions, probabilities, actual_values)
        timings["write_ms"] = (time.perf_counter() - mark) * 1000

        report = {
            "status": "ok",
            **self._identity(batch),
            "event_time": event_time.isoformat(),
            "event_time_source": time_source,
            "notes": notes,
            "rows": validated.rows_read,
            "rows_scored": rows_scored,
            "rows_invalid": validated.invalid_row_count,
            "labeled_rows": rows_labeled,
            "label_coverage": rows_labeled / rows_scored,
            "metrics": plain_values(quality),
            "quality_metrics_withheld": withheld,
            "metrics_published": list(metrics),
            "invalid_rows": validated.invalid_rows,
            "invalid_by_reason": validated.invalid_by_reason,
            "data_quality": findings,
            "drift": drift_report,
            "actuals_requests": stats.requests,
            "outputs": outputs,
        }
        return Outcome(
            report=report,
            metric_data=metric_data(metrics, self.model_name, event_time),
            actuals_requests=stats.requests,
        )

    def _rejected(
        self, batch: BatchObject, rejection: BatchRejected, upload_time: datetime, now: datetime
    ) -> Outcome:
        logger.warning("batch rejected: %s", rejection.reason)
        stamp = upload_time if now - OLDEST_ACCEPTED <= upload_time <= now + NEWEST_ACCEPTED else now
        report = {
            "status": "rejected",
            **self._identity(batch),
            "reason": rejection.reason,
            "code": rejection.code,
            "details": {name: value for name, value in rejection.details.items()},
            "event_time": stamp.isoformat(),
            "metrics": {},
            "metrics_published": ["BatchesRejected"],
        }
        data = metric_data({"BatchesRejected": MetricValue(1.0)}, self.model_name, stamp)
        return Outcome(report=report, metric_data=data)

    def _identity(self, batch: BatchObject) -> dict[str, Any]:
        return {
            "batch": {
                "bucket": batch.bucket,
                "key": batch.key,
                "version_id": batch.version_id,
                "etag": batch.etag,
            },
            "model": {"name": self.model_name, "version": self.bundle.metadata.version},
            "processed_at": self.clock().isoformat(),
        }

    # -- outputs --------------------------------------------------------------------------

    def _write_predictions(
        self,
        batch: BatchObject,
        validated: ValidatedBatch,
        predictions: np.ndarray,
        probabilities: np.ndarray | None,
        actual_values: list[Any],
    ) -> dict[str, str]:
        metadata = self.bundle.metadata
        table = pd.DataFrame({metadata.id_column: validated.ids, "prediction": predictions})
        if probabilities is not None:
            if len(metadata.classes) == 2:
                table["probability"] = probabilities[:, metadata.positive_index]
            else:
                table["probability"] = probabilities.max(axis=1)
        table["actual"] = pd.Series(actual_values, dtype=object)
        for column in validated.passthrough.columns:
            if column not in table.columns:
                table[column] = validated.passthrough[column]
        # mtime=0: the same predictions give the same bytes, so a retried batch rewrites
        # an identical object.
        body = gzip.compress(table.to_csv(index=False).encode("utf-8"), mtime=0)
        key = batch.results_prefix(self.config.results_prefix) + "predictions.csv.gz"
        self.s3.put_object(
            Bucket=batch.bucket,
            Key=key,
            Body=body,
            # Not ContentEncoding=gzip: clients would then unpack it silently and save
            # plain CSV under a .gz name.
            ContentType="application/gzip",
        )
        return {
            "predictions": f"s3://{batch.bucket}/{key}",
            "report": f"s3://{batch.bucket}/{batch.results_prefix(self.config.results_prefix)}report.json",
        }

    def _write_report(self, batch: BatchObject, report: dict[str, Any]) -> None:
        key = batch.results_prefix(self.config.results_prefix) + "report.json"
        self._put_json(batch.bucket, key, report)
        # A pointer to the newest report, so an alert can link it with one GET instead
        # of listing every report under results/.
        latest = {
            "key": batch.key,
            "report": key,
            "status": report["status"],
            "event_time": report["event_time"],
        }
        self._put_json(batch.bucket, f"{self.config.results_prefix}{LATEST_REPORT_POINTER}", latest)

    def _put_json(self, bucket: str, key: str, document: dict[str, Any]) -> None:
        self.s3.put_object(
            Bucket=bucket,
            Key=key,
            ContentType="application/json",
            Body=json.dumps(document, indent=2, default=str).encode("utf-8"),
        )


def monitor_from_environment() -> BatchMonitor:
    """The warm-start state of the batch-monitor function: config, model, clients."""
    from modelwatch.aws import client
    from modelwatch.model_bundle import load_bundle

    config = MonitorConfig.from_env()
    bundle = load_bundle(config.model_dir)
    return BatchMonitor(
        config, bundle, s3=client("s3"), dynamodb=client("dynamodb"), cloudwatch=client("cloudwatch")
    )
