"""Upserting an actuals file from S3 into the actuals table (the actuals-loader function)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelwatch.actuals import RequestStats, read_actuals_file, write_actuals
from modelwatch.config import LoaderConfig
from modelwatch.errors import ActualsFileRejected, BatchRejected
from modelwatch.model_bundle import ModelMetadata


@dataclass
class ActualsLoader:
    config: LoaderConfig
    metadata: ModelMetadata
    s3: Any
    dynamodb: Any

    def load(self, bucket: str, key: str) -> dict[str, Any]:
        """Upsert one file; a file that cannot be read raises ActualsFileRejected."""
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            records = read_actuals_file(body, key, self.metadata.id_column, self.metadata.target)
        except BatchRejected as rejection:
            # Raised, not returned: the function's Errors alarm fires and, after Lambda's
            # retries, the dead-letter queue keeps the event — otherwise batches would
            # quietly go unlabeled.
            raise ActualsFileRejected(rejection.reason) from None
        stats = RequestStats()
        written = write_actuals(self.dynamodb, self.config.actuals_table, records, stats=stats)
        return {"key": key, "status": "ok", "written": written, "requests": stats.requests}


def loader_from_environment() -> ActualsLoader:
    from modelwatch.aws import client
    from modelwatch.model_bundle import load_metadata

    config = LoaderConfig.from_env()
    return ActualsLoader(
        config, load_metadata(config.model_dir), s3=client("s3"), dynamodb=client("dynamodb")
    )
