"""Actuals loader: a CSV dropped under actuals/ is upserted into the actuals table."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwatch.actuals_loading import ActualsLoader, loader_from_environment

logger = Logger()
tracer = Tracer()

_loader: ActualsLoader | None = None


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    global _loader
    if _loader is None:
        _loader = loader_from_environment()
    results = []
    for record in event.records:
        key = unquote_plus(record.s3.get_object.key)  # S3 sends keys URL-encoded
        logger.set_correlation_id(key)
        result = _loader.load(record.s3.bucket.name, key)
        logger.info("actuals file processed", extra=result)
        results.append(result)
    return {"files": results}
