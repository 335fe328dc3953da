"""Actuals loader: a CSV dropped under actuals/ is upserted into the actuals table."""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwatch.actuals_loading import ActualsLoader, loader_from_environment

logger = Logger()
tracer = Tracer()


@cache
def loader() -> ActualsLoader:
    """Built on the first event, not at import, so tests can set up moto and the
    environment first; kept while the instance is warm."""
    return loader_from_environment()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    results = []
    for record in event.records:
        key = unquote_plus(record.s3.get_object.key)  # S3 sends keys URL-encoded
        logger.set_correlation_id(key)
        result = loader().load(record.s3.bucket.name, key)
        logger.info("actuals file processed", extra=result)
        results.append(result)
    return {"files": results}
