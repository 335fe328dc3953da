"""Batch monitor: an S3 object under incoming/ becomes predictions, metrics and a report."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwatch.monitor import BatchMonitor, BatchObject, monitor_from_environment

logger = Logger()
tracer = Tracer()

# A redelivered S3 event (same bucket, key and version) returns the first result and
# publishes nothing twice. Records expire after a day; S3 redeliveries come within hours.
idempotency_config = IdempotencyConfig(
    event_key_jmespath="[bucket, key, version_id, etag]", expires_after_seconds=86_400
)

_monitor: BatchMonitor | None = None
_process_once: Any = None


def _monitor_once() -> Any:
    """Created on first use so tests can prepare the environment and moto beforehand."""
    global _monitor, _process_once
    if _process_once is None:
        _monitor = monitor_from_environment()
        persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])

        # A fixed key prefix: renaming this function or its module must not make old
        # deliveries look new.
        @idempotent_function(
            data_keyword_argument="batch",
            persistence_store=persistence,
            config=idempotency_config,
            key_prefix="batch-monitor",
        )
        def process(batch: dict[str, str]) -> dict[str, Any]:
            assert _monitor is not None
            outcome = _monitor.process(BatchObject(**batch))
            report = outcome.report
            logger.info(
                "batch processed",
                extra={
                    "status": report["status"],
                    "rows": report.get("rows"),
                    "labeled_rows": report.get("labeled_rows"),
                    "metrics": report.get("metrics"),
                    "reason": report.get("reason"),
                },
            )
            return {
                "key": batch["key"],
                "status": report["status"],
                "report": report["outputs"]["report"] if "outputs" in report else None,
            }

        _process_once = process
    return _process_once


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    process = _monitor_once()
    idempotency_config.register_lambda_context(context)
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
        batch = {
            "bucket": record.s3.bucket.name,
            "key": key,
            "version_id": s3_object.version_id or "",
            "etag": s3_object.etag,
        }
        results.append(process(batch=batch))
    return {"batches": results}
