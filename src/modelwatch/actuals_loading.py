"""Upserting an actuals file into the actuals table: the actuals-loader function and the CLI.

A file is streamed: read a chunk of rows, write it (BatchWriteItem, 25 items a
request), read the next. A later row of an id wins: within a chunk duplicates are
collapsed before writing (BatchWriteItem refuses two writes to one key in a request),
and a later chunk overwrites an earlier one.

Labels that match none of the model's classes are still written (the table keeps what
upstream sent; a retrained model may know them), but counted, named in the result and
published as the UnknownLabels metric: a feed whose labels never match would otherwise
load "ok" and leave every batch unlabeled.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from aws_lambda_powertools import Logger

from modelwatch.actuals import CHUNK_ROWS, RequestStats, iter_actuals_file, write_actuals
from modelwatch.config import LoaderConfig
from modelwatch.errors import ActualsFileRejected, BatchRejected
from modelwatch.labels import LabelNormaliser
from modelwatch.model_bundle import ModelMetadata
from modelwatch.publishing import UNKNOWN_LABELS_METRIC, publish_metrics

logger = Logger(child=True)

MAX_UNKNOWN_LABEL_EXAMPLES = 5


@dataclass
class UnknownLabels:
    """How many rows hold a label the model does not know, and the first few such labels
    with their counts (only a few: a file whose label column holds ids has millions)."""

    rows: int = 0
    examples: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, rows: int) -> None:
        self.rows += rows
        if label in self.examples or len(self.examples) < MAX_UNKNOWN_LABEL_EXAMPLES:
            self.examples[label] = self.examples.get(label, 0) + rows


@dataclass
class LoadSummary:
    rows: int = 0  # data rows in the file, with or without an id and a label
    written: int = 0  # items written (an id repeated in a later chunk is written again)
    unknown_labels: UnknownLabels = field(default_factory=UnknownLabels)
    stats: RequestStats = field(default_factory=RequestStats)
    without_label: int = 0  # rows left out: no id or no label


def load_actuals_file(
    stream: IO[bytes],
    key: str,
    *,
    dynamodb: Any,
    table: str,
    id_column: str,
    target: str,
    labels: LabelNormaliser | None,
    max_bytes: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> LoadSummary:
    """Stream one actuals file into ``table``; ``labels`` (the model's classes) counts the
    unknown ones, None skips that check. Raises BatchRejected for a file that cannot be read."""
    summary = LoadSummary()
    try:
        for chunk in iter_actuals_file(stream, key, id_column, target, max_bytes, chunk_rows):
            summary.rows += chunk.rows
            if labels is not None:
                for label, rows in Counter(actual for _, actual, _ in chunk.records).items():
                    if labels.normalise(label) is None:
                        summary.unknown_labels.add(label, rows)
            summary.without_label += chunk.rows - len(chunk.records)
            summary.written += write_actuals(dynamodb, table, chunk.records, stats=summary.stats)
        if summary.rows and summary.without_label == summary.rows:
            # A file of blank (or NA) labels would load "ok" with nothing in it, and the
            # batches it was meant for would stay unlabeled without a word.
            raise BatchRejected(
                f"actuals file {key!r} has {summary.rows:,} rows but none with both a {id_column!r} and a "
                f"{target!r} value (blank, NA or null cells are not labels): nothing was loaded; export the "
                "labels into the file and upload it again",
                code="no_labels",
            )
    except BatchRejected as rejection:
        if summary.written:
            rejection.reason += (
                f" ({summary.written:,} actuals of the rows before the problem were loaded; loading is an "
                "upsert, so load the corrected file again)"
            )
            rejection.args = (rejection.reason,)
        raise
    return summary


@dataclass
class ActualsLoader:
    config: LoaderConfig
    metadata: ModelMetadata
    s3: Any
    dynamodb: Any
    cloudwatch: Any

    @property
    def model_name(self) -> str:
        return self.config.model_name or self.metadata.name

    def load(self, bucket: str, key: str) -> dict[str, Any]:
        """Upsert one file and publish its UnknownLabels count; a file that cannot be read
        raises ActualsFileRejected."""
        max_bytes = self.config.max_actuals_megabytes * 1024 * 1024
        classification = self.metadata.task == "classification"
        response = self.s3.get_object(Bucket=bucket, Key=key)
        try:
            if response.get("ContentLength", 0) > max_bytes:
                raise BatchRejected(
                    f"actuals file {key!r} is {response['ContentLength']:,} bytes, over the actuals file "
                    f"size limit of {max_bytes:,} bytes (MaxActualsMegabytes); split it into smaller files",
                    code="too_large",
                )
            summary = load_actuals_file(
                response["Body"],
                key,
                dynamodb=self.dynamodb,
                table=self.config.actuals_table,
                id_column=self.metadata.id_column,
                target=self.metadata.target,
                labels=LabelNormaliser(self.metadata.classes if classification else None),
                max_bytes=max_bytes,
            )
        except BatchRejected as rejection:
            # Raised, not returned: the function's Errors alarm fires and, after Lambda's
            # retries, the dead-letter queue keeps the event — otherwise batches would
            # quietly go unlabeled.
            raise ActualsFileRejected(rejection.reason) from None
        finally:
            response["Body"].close()
        unknown = summary.unknown_labels
        publish_metrics(
            self.cloudwatch,
            self.config.metrics_namespace,
            [
                {
                    "MetricName": UNKNOWN_LABELS_METRIC,
                    "Dimensions": [{"Name": "ModelName", "Value": self.model_name}],
                    "Timestamp": datetime.now(UTC),
                    "Unit": "Count",
                    "Value": float(unknown.rows),
                }
            ],
        )
        result = {
            "key": key,
            "status": "ok",
            "rows": summary.rows,
            "written": summary.written,
            "unknown_labels": unknown.rows,
            "unknown_label_examples": unknown.examples,
            "rows_without_label": summary.without_label,
            "requests": summary.stats.requests,
            "retries": summary.stats.retries,
        }
        if summary.without_label:
            logger.warning(
                f"{summary.without_label:,} of the {summary.rows:,} rows of {key!r} have no id or no label "
                "and were left out",
                extra={"rows_without_label": summary.without_label},
            )
        if unknown.rows:
            logger.warning(
                f"{unknown.rows:,} actuals in {key!r} match none of the model's classes "
                f"{list(self.metadata.classes)}: {unknown.examples} (label: rows); they were written "
                "but no batch will count them as labeled",
                extra={"unknown_labels": unknown.rows, "unknown_label_examples": unknown.examples},
            )
        return result


def loader_from_environment() -> ActualsLoader:
    from modelwatch.aws import client
    from modelwatch.model_bundle import load_metadata

    config = LoaderConfig.from_env()
    return ActualsLoader(
        config,
        load_metadata(config.model_dir),
        s3=client("s3"),
        dynamodb=client("dynamodb"),
        cloudwatch=client("cloudwatch"),
    )
