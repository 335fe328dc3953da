"""Batch monitor: an S3 object under incoming/ becomes predictions, metrics and a report."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
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

from modelwatch.aws import client
from modelwatch.config import MonitorConfig
from modelwatch.monitor import BatchMonitor
from modelwatch.results import BatchObject

logger = Logger()
tracer = Tracer()

# A redelivered S3 event (same bucket, key, version and ETag) returns the first result
# and publishes nothing twice. Records expire after a day; S3 redeliveries come within hours.
IDEMPOTENCY = IdempotencyConfig(
    event_key_jmespath="[bucket, key, version_id, etag]", expires_after_seconds=86_400
)


@cache
def process_once() -> Callable[..., dict[str, Any]]:
    """Built on the first event, not at import, so tests can set up moto and the
    environment first; kept while the instance is warm."""
    config = MonitorConfig.from_env()
    monitor = BatchMonitor.from_config(config)
    persistence = DynamoDBPersistenceLayer(
        table_name=config.idempotency_table, boto3_client=client("dynamodb")
    )

    # A fixed key prefix: renaming this function or its module must not make old
    # deliveries look new.
    @idempotent_function(
        data_keyword_argument="batch",
        persistence_store=persistence,
        config=IDEMPOTENCY,
        key_prefix="batch-monitor",
    )
    def process(batch: BatchObject) -> dict[str, Any]:
        report = monitor.process(batch)
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
            "report": scored.outputs["report"] if scored else None,
        }

    return process


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    process = process_once()
    IDEMPOTENCY.register_lambda_context(context)
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
        )
        results.append(process(batch=batch))
    return {"batches": results}
