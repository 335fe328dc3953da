"""The batch monitor's S3 reads and writes: the batch object in, the results out.

Layout, in the batch's bucket (never under incoming/, so an output cannot trigger the
function again)::

    incoming/<path>                       the batch (read at the version the event announced)
    results/<path>/predictions.csv.gz     id, prediction, probability, actual, pass-through columns
    results/<path>/report.json            see modelwatch.report
    results/<path>/report.html            the same report for people (modelwatch.report_html)
    results/latest.json                   pointer to the newest report (alerts link it)
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from modelwatch.config import INCOMING_PREFIX, LATEST_REPORT_POINTER, RESULTS_PREFIX
from modelwatch.errors import BatchRejected
from modelwatch.report_html import render_report_html

# S3 error codes for an object (or version) deleted between the event and the read.
MISSING_OBJECT_CODES = ("NoSuchKey", "404", "NoSuchVersion")
# S3 keys are at most 1,024 bytes of UTF-8. A batch key near that limit would give
# result keys over it (and a batch with no report), so a results prefix longer than
# this is shortened, keeping a hash of the whole key so two long keys never share one.
MAX_RESULTS_PREFIX_BYTES = 1024 - 64


@dataclass(frozen=True)
class BatchObject:
    """The S3 object version an event announced (the key already URL-decoded)."""

    bucket: str
    key: str
    version_id: str = ""  # set when the bucket is versioned: read exactly the version announced
    etag: str = ""

    @property
    def results_prefix(self) -> str:
        relative = self.key.removeprefix(INCOMING_PREFIX)
        prefix = f"{RESULTS_PREFIX}{relative}/"
        if len(prefix.encode("utf-8")) <= MAX_RESULTS_PREFIX_BYTES:
            return prefix
        digest = hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:16]
        room = MAX_RESULTS_PREFIX_BYTES - len(f"{RESULTS_PREFIX}~{digest}/".encode())
        # Cut on a character boundary: never half of a multi-byte character.
        head = relative.encode("utf-8")[:room].decode("utf-8", errors="ignore")
        return f"{RESULTS_PREFIX}{head}~{digest}/"

    @property
    def report_key(self) -> str:
        return self.results_prefix + "report.json"

    @property
    def report_html_key(self) -> str:
        return self.results_prefix + "report.html"

    @property
    def predictions_key(self) -> str:
        return self.results_prefix + "predictions.csv.gz"


@dataclass(frozen=True)
class BatchFile:
    body: bytes
    upload_time: datetime
    batch_time: str | None  # the object metadata ``batch-time``, when the uploader set it


class ResultStore:
    def __init__(self, s3: Any):
        self.s3 = s3

    def read_batch(self, batch: BatchObject, limit_bytes: int) -> BatchFile:
        request = {"Bucket": batch.bucket, "Key": batch.key}
        if batch.version_id:
            request["VersionId"] = batch.version_id
        try:
            response = self.s3.get_object(**request)
        except ClientError as problem:
            if problem.response.get("Error", {}).get("Code", "") in MISSING_OBJECT_CODES:
                raise BatchRejected(
                    f"s3://{batch.bucket}/{batch.key} was deleted before it could be read; upload it again "
                    "to have it scored",
                    code="object_missing",
                    log_safe="the object (version) was deleted before it could be read",
                ) from None
            raise
        if response["ContentLength"] > limit_bytes:
            response["Body"].close()
            raise BatchRejected(
                f"{batch.key!r} is {response['ContentLength']:,} bytes, over the configured batch size limit "
                f"of {limit_bytes:,} bytes (MaxBatchMegabytes); split it into smaller batches",
                code="too_large",
                log_safe=f"{response['ContentLength']:,} bytes, over the {limit_bytes:,}-byte limit",
            )
        metadata = {name.lower(): value for name, value in (response.get("Metadata") or {}).items()}
        modified: datetime = response["LastModified"]
        return BatchFile(
            body=response["Body"].read(),
            upload_time=modified.replace(tzinfo=UTC) if modified.tzinfo is None else modified.astimezone(UTC),
            batch_time=metadata.get("batch-time"),
        )

    def write_predictions(self, batch: BatchObject, table: pd.DataFrame) -> dict[str, str]:
        # mtime=0: the same predictions give the same bytes, so a retried batch rewrites
        # an identical object.
        body = gzip.compress(table.to_csv(index=False).encode("utf-8"), mtime=0)
        self.s3.put_object(
            Bucket=batch.bucket,
            Key=batch.predictions_key,
            Body=body,
            # Not ContentEncoding=gzip: clients would then unpack it silently and save
            # plain CSV under a .gz name.
            ContentType="application/gzip",
        )
        return {
            "predictions": f"s3://{batch.bucket}/{batch.predictions_key}",
            "report": f"s3://{batch.bucket}/{batch.report_key}",
        }

    def write_report(self, batch: BatchObject, report: dict[str, Any]) -> None:
        self._put_json(batch.bucket, batch.report_key, report)
        # The content type makes S3 (and the console's Open) show the page, not download it.
        self.s3.put_object(
            Bucket=batch.bucket,
            Key=batch.report_html_key,
            ContentType="text/html; charset=utf-8",
            Body=render_report_html(report).encode("utf-8"),
        )
        # A pointer to the newest report, so an alert can link it with one GET instead
        # of listing every report under results/. Newest by upload time, not by
        # processing order: a retried or redelivered older version must not replace it.
        # (Two versions processed at the same instant can still race; the pointer is a
        # convenience for links, and each report stays in its own place.)
        pointer_key = f"{RESULTS_PREFIX}{LATEST_REPORT_POINTER}"
        current = self._read_json(batch.bucket, pointer_key)
        uploaded_at = str(report.get("uploaded_at", ""))
        if current and _later(str(current.get("uploaded_at", "")), uploaded_at):
            return
        latest = {
            "key": batch.key,
            "version_id": batch.version_id,
            "report": batch.report_key,
            "status": report["status"],
            "event_time": report["event_time"],
            "uploaded_at": uploaded_at,
        }
        self._put_json(batch.bucket, pointer_key, latest)

    def _read_json(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as problem:
            if problem.response.get("Error", {}).get("Code", "") in MISSING_OBJECT_CODES:
                return None
            raise
        try:
            document = json.loads(body)
        except ValueError:
            return None  # a damaged pointer is replaced
        return document if isinstance(document, dict) else None

    def _put_json(self, bucket: str, key: str, document: dict[str, Any]) -> None:
        self.s3.put_object(
            Bucket=bucket,
            Key=key,
            ContentType="application/json",
            Body=json.dumps(document, indent=2, default=str).encode("utf-8"),
        )


def _later(first: str, second: str) -> bool:
    """Whether ISO time ``first`` is after ``second`` (an unreadable time is never later)."""
    try:
        return datetime.fromisoformat(first) > datetime.fromisoformat(second)
    except ValueError:
        return False
