"""Label join: actuals written to the actuals table score the predictions logged for them.

Triggered by the actuals table's stream (INSERT and MODIFY records), whatever wrote the
labels. Any failure raises: Lambda retries the stream batch (bisecting it), then sends
its description to the dead-letter queue; joining again is harmless (modelwatch.label_join).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwatch.config import JoinConfig
from modelwatch.label_join import LabelJoin

# Of the invocation's time, what waiting for a batch being scored leaves for the join.
JOIN_RESERVE_SECONDS = 180

logger = Logger()
tracer = Tracer()


@cache
def label_join() -> LabelJoin:
    """Built on the first event, not at import, so tests can set up moto and the
    environment first; kept while the instance is warm."""
    return LabelJoin.from_config(JoinConfig.from_env())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=DynamoDBStreamEvent)
def lambda_handler(event: DynamoDBStreamEvent, context: LambdaContext) -> dict[str, Any]:
    ids = []
    written: list[int] = []
    for record in event.records:
        if record.event_name is None or record.event_name.name == "REMOVE" or record.dynamodb is None:
            continue  # a deleted label takes nothing back: CloudWatch cannot
        keys = record.dynamodb.keys or {}
        if "record_id" in keys:
            ids.append(str(keys["record_id"]))
        if record.dynamodb.approximate_creation_date_time is not None:
            written.append(record.dynamodb.approximate_creation_date_time)
    # The labels arrived when the newest of them was written (DynamoDB's own clock), not
    # when this invocation runs: a retried batch keeps its time.
    arrived = datetime.fromtimestamp(max(written), UTC) if written else None
    # A label can find its row logged while the batch is still being scored: wait for it,
    # keeping time for the join itself (a large batch's file is read and written whole).
    wait = max(0.0, context.get_remaining_time_in_millis() / 1000 - JOIN_RESERVE_SECONDS)
    result = label_join().join(
        ids,
        arrived_at=arrived,
        wait_seconds=wait,
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    summary = {
        "labels": result.labels,
        "logged": result.logged,
        "batches": [
            {
                "key": batch.key,
                "version_id": batch.version_id,
                "newly_labeled": batch.newly_labeled,
                "corrected": batch.corrected,
                "labeled_rows": batch.labeled_rows,
                "rows": batch.rows,
            }
            for batch in result.batches
        ],
        "dynamodb_requests": result.requests,
    }
    logger.info("labels joined", extra=summary)
    return summary
