"""The batch monitor's S3 reads and writes: the batch object in, the results out.

Layout, in the batch's bucket (never under incoming/, so an output cannot trigger the
function again)::

    incoming/<path>                                   the batch (read at the version announced)
    results/<path>/versions/<version>/report.json     see modelwatch.report
    results/<path>/versions/<version>/report.html     the same report for people (modelwatch.report_html)
    results/<path>/versions/<version>/predictions.csv.gz
                                                      id, prediction, probability, actual, pass-through
    results/<path>/report.json                        a copy of the newest version's report
    results/latest.json                               pointer to the newest report (alerts link it)

Every object version keeps its own results: a changed file uploaded to the same key is a
new batch and never overwrites the earlier version's. "Newest" is by upload time (S3
LastModified), not by processing order, so a retried or redelivered older version never
takes the key's report or ``latest.json`` back. (``<version>`` is ``null`` in a bucket
without versioning, where a changed file replaces the earlier results.)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from modelwatch.config import INCOMING_PREFIX, LATEST_REPORT_POINTER, RESULTS_PREFIX
from modelwatch.errors import BatchRejected, ResultsContended
from modelwatch.report_html import render_report_html

# S3 error codes for an object (or version) deleted between the event and the read.
MISSING_OBJECT_CODES = ("NoSuchKey", "404", "NoSuchVersion")
# S3 keys are at most 1,024 bytes of UTF-8. A batch key near that limit would give
# result keys over it (and a batch with no report), so a results prefix longer than
# this is shortened, keeping a hash of the whole key so two long keys never share one.
# The room left is for versions/<version id>/ and the file names.
MAX_RESULTS_PREFIX_BYTES = 1024 - 128
# A conditional write lost to another writer (412), or to one at the same moment (409).
CONDITION_LOST_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
CONDITIONAL_WRITE_ATTEMPTS = 5


@dataclass(frozen=True)
class BatchObject:
    """The S3 object version an event announced (the key already URL-decoded)."""

    bucket: str
    key: str
    version_id: str = ""  # set when the bucket is versioned: read exactly the version announced
    etag: str = ""
    # S3's order of the events of one key (hex; compared after left-padding). It breaks
    # ties between versions uploaded within the same second, S3's LastModified resolution.
    sequencer: str = ""

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
    def version_prefix(self) -> str:
        return f"{self.results_prefix}versions/{self.version_id or 'null'}/"

    @property
    def report_key(self) -> str:
        """This version's report."""
        return self.version_prefix + "report.json"

    @property
    def report_html_key(self) -> str:
        return self.version_prefix + "report.html"

    @property
    def predictions_key(self) -> str:
        return self.version_prefix + "predictions.csv.gz"

    @property
    def newest_report_key(self) -> str:
        """The report of the key's newest version (a copy, replaced only by a newer upload)."""
        return self.results_prefix + "report.json"


@dataclass(frozen=True)
class SpooledBatch:
    path: Path  # the object's bytes, on local disk (/tmp in Lambda)
    digest: str  # SHA-256 of those bytes (modelwatch.ledger.content_digest)
    upload_time: datetime
    batch_time: str | None  # the object metadata ``batch-time``, when the uploader set it
    version_id: str  # the version read ("null" in a bucket without versioning)


# gzip level of predictions.csv.gz: on 100,000 rows of the sample's predictions, level 1
# took 0.03 CPU-seconds and gzip's default 9 took 0.40 (a sixth of the whole compute
# path), for a file 11% larger.
PREDICTIONS_GZIP_LEVEL = 1

# Blocks of the S3 stream copied to disk at a time.
SPOOL_BLOCK_BYTES = 1 << 20


def _batch_attributes(response: dict[str, Any]) -> dict[str, Any]:
    metadata = {name.lower(): value for name, value in (response.get("Metadata") or {}).items()}
    modified: datetime = response["LastModified"]
    return {
        "upload_time": modified.replace(tzinfo=UTC) if modified.tzinfo is None else modified.astimezone(UTC),
        "batch_time": metadata.get("batch-time"),
        "version_id": response.get("VersionId") or "null",
    }


class ResultStore:
    def __init__(self, s3: Any):
        self.s3 = s3

    def spool_batch(self, batch: BatchObject, limit_bytes: int, path: Path) -> SpooledBatch:
        """Copy the batch object to ``path`` a megabyte at a time, hashing it on the way:
        the content digest of modelwatch.ledger without holding the bytes in memory."""
        response = self._get_batch(batch, limit_bytes)
        digest = hashlib.sha256()
        with path.open("wb") as file:
            for block in response["Body"].iter_chunks(SPOOL_BLOCK_BYTES):
                digest.update(block)
                file.write(block)
        return SpooledBatch(path=path, digest=digest.hexdigest(), **_batch_attributes(response))

    def _get_batch(self, batch: BatchObject, limit_bytes: int) -> dict[str, Any]:
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
        return response

    def upload_predictions(self, batch: BatchObject, path: Path) -> tuple[dict[str, str], str]:
        """write_predictions for a predictions.csv.gz already written to ``path``
        (modelwatch.monitor writes it a chunk at a time): one PutObject from the file."""
        with path.open("rb") as body:
            response = self.s3.put_object(
                Bucket=batch.bucket, Key=batch.predictions_key, Body=body, ContentType="application/gzip"
            )
        return self._outputs(batch), str(response.get("VersionId") or "")

    def write_predictions(self, batch: BatchObject, table: pd.DataFrame) -> str:
        """The predictions file of ``batch`` replaced by ``table``; returns the S3 version
        written ("" in a bucket without versioning)."""
        # mtime=0: the same predictions give the same bytes, so a retried batch rewrites
        # an identical object.
        body = gzip.compress(
            table.to_csv(index=False).encode("utf-8"), compresslevel=PREDICTIONS_GZIP_LEVEL, mtime=0
        )
        response = self.s3.put_object(
            Bucket=batch.bucket,
            Key=batch.predictions_key,
            Body=body,
            # Not ContentEncoding=gzip: clients would then unpack it silently and save
            # plain CSV under a .gz name.
            ContentType="application/gzip",
        )
        return str(response.get("VersionId") or "")

    @staticmethod
    def _outputs(batch: BatchObject) -> dict[str, str]:
        return {
            "predictions": f"s3://{batch.bucket}/{batch.predictions_key}",
            "report": f"s3://{batch.bucket}/{batch.report_key}",
        }

    def read_predictions(self, batch: BatchObject, version_id: str = "") -> pd.DataFrame:
        """The predictions file of ``batch`` (record ids as text; actuals as written): the
        S3 version ``version_id`` when given, else the newest."""
        request = {"Bucket": batch.bucket, "Key": batch.predictions_key}
        if version_id:
            request["VersionId"] = version_id
        body = self.s3.get_object(**request)["Body"].read()
        return pd.read_csv(io.BytesIO(gzip.decompress(body)), dtype={0: str}, low_memory=False)

    def read_report(self, batch: BatchObject) -> dict[str, Any] | None:
        return self._read_json(batch.bucket, batch.report_key)

    def write_report(self, batch: BatchObject, report: dict[str, Any], *, newest: bool = True) -> None:
        """This version's report; then, unless ``newest`` is False (a duplicate), the key's
        report and ``results/latest.json`` if no newer upload holds them already."""
        self._put_json(batch.bucket, batch.report_key, report)
        # The content type makes S3 (and the console's Open) show the page, not download it.
        self.s3.put_object(
            Bucket=batch.bucket,
            Key=batch.report_html_key,
            ContentType="text/html; charset=utf-8",
            Body=render_report_html(report).encode("utf-8"),
        )
        if not newest:
            return
        order = (str(report.get("uploaded_at", "")), batch.sequencer)
        self._replace_unless_newer(batch.bucket, batch.newest_report_key, report, order)
        # A pointer to the newest report of all, so an alert can link it with one GET
        # instead of listing every report under results/. Across keys, "newest" is by
        # upload time only (sequencers order the events of one key).
        latest = {
            "key": batch.key,
            "version_id": batch.version_id,
            "report": batch.report_key,
            "status": report["status"],
            "event_time": report["event_time"],
            "uploaded_at": order[0],
            "sequencer": batch.sequencer,
        }
        self._replace_unless_newer(batch.bucket, f"{RESULTS_PREFIX}{LATEST_REPORT_POINTER}", latest, order)

    def _replace_unless_newer(
        self, bucket: str, key: str, document: dict[str, Any], order: tuple[str, str]
    ) -> None:
        """Write ``document`` unless the object holds a newer upload's. The write is
        conditional on the object being the one read (S3's If-Match / If-None-Match), so
        two versions processed at once cannot leave the older one's there."""
        for _ in range(CONDITIONAL_WRITE_ATTEMPTS):
            current, etag = self._read_json_and_etag(bucket, key)
            if current:
                sequencer = current.get("sequencer", current.get("batch", {}).get("sequencer", ""))
                if _later((str(current.get("uploaded_at", "")), str(sequencer)), order):
                    return
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self._put_json(bucket, key, document, **condition)
                return
            except ClientError as problem:
                if problem.response.get("Error", {}).get("Code", "") not in CONDITION_LOST_CODES:
                    raise
        raise ResultsContended(
            f"s3://{bucket}/{key} kept changing under {CONDITIONAL_WRITE_ATTEMPTS} conditional writes"
        )

    def _read_json(self, bucket: str, key: str) -> dict[str, Any] | None:
        return self._read_json_and_etag(bucket, key)[0]

    def _read_json_and_etag(self, bucket: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """The JSON document and the ETag of the object (None, None when it is missing; a
        damaged document is None with its ETag, so it is replaced)."""
        try:
            response = self.s3.get_object(Bucket=bucket, Key=key)
        except ClientError as problem:
            if problem.response.get("Error", {}).get("Code", "") in MISSING_OBJECT_CODES:
                return None, None
            raise
        body, etag = response["Body"].read(), response.get("ETag")
        try:
            document = json.loads(body)
        except ValueError:
            return None, etag
        return (document if isinstance(document, dict) else None), etag

    def _put_json(self, bucket: str, key: str, document: dict[str, Any], **condition: str) -> None:
        self.s3.put_object(
            Bucket=bucket,
            Key=key,
            ContentType="application/json",
            Body=json.dumps(document, indent=2, default=str).encode("utf-8"),
            **condition,
        )


def _later(first: tuple[str, str], second: tuple[str, str]) -> bool:
    """Whether upload ``first`` (ISO time, sequencer) is after ``second``. The sequencer
    decides a tie of times when both have one; an unreadable time is never later."""
    try:
        first_time, second_time = datetime.fromisoformat(first[0]), datetime.fromisoformat(second[0])
    except ValueError:
        return False
    if first_time != second_time or not (first[1] and second[1]):
        return first_time > second_time
    width = max(len(first[1]), len(second[1]))
    return first[1].zfill(width).upper() > second[1].zfill(width).upper()
