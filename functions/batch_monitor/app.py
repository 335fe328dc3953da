"""Batch monitor: an S3 object under incoming/ becomes predictions, metrics and a report."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwatch.config import MonitorConfig
from modelwatch.monitor import BatchMonitor
from modelwatch.results import BatchObject

logger = Logger()
tracer = Tracer()


@cache
def batch_monitor() -> BatchMonitor:
    """Built on the first event, not at import, so tests can set up moto and the
    environment first; kept while the instance is warm."""
    return BatchMonitor.from_config(MonitorConfig.from_env())


def announced_at(event_time: str | None) -> datetime | None:
    """The record's eventTime (when S3 finished the upload, by S3's clock); None when absent
    or unreadable, and the monitor then uses its own clock."""
    try:
        moment = datetime.fromisoformat(event_time or "")
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def process(batch: BatchObject, announced: datetime | None = None) -> dict[str, Any]:
    """One object version to one report. Safe to run again for the same version (a
    redelivered event, Lambda's retry): the batch ledger publishes its metrics once,
    and the files are rewritten with the same content."""
    report = batch_monitor().process(batch, announced)
    scored = report.scored
    logger.info(
        "batch processed",
        extra={
            "status": report.status,
            "rows": scored.rows if scored else None,
            "labeled_rows": scored.labeled_rows if scored else None,
            "metrics": scored.metrics if scored else None,
            "code": report.rejection.code if report.rejection else None,
        },
    )
    return {
        "key": batch.key,
        "status": report.status,
        "report": f"s3://{report.batch.bucket}/{report.batch.report_key}",
    }


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    results = []
    for record in event.records:
        s3_object = record.s3.get_object
        key = unquote_plus(s3_object.key)  # S3 sends keys URL-encoded: "+" for space, %xx for UTF-8
        logger.set_correlation_id(key)
        if key.endswith("/"):
            # A "folder" made in the S3 console: an empty marker object, not a batch.
            logger.info("skipped a folder marker")
            results.append({"key": key, "status": "skipped", "report": None})
            continue
        batch = BatchObject(
            bucket=record.s3.bucket.name,
            key=key,
            version_id=s3_object.version_id or "",
            etag=s3_object.etag,
            sequencer=s3_object.get("sequencer") or "",
        )
        results.append(process(batch, announced_at(record.get("eventTime"))))
    return {"batches": results}
