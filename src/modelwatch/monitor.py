"""Monitoring one batch: read, validate, predict, join actuals, measure, write, publish.

``BatchMonitor.process`` turns one S3 object version into exactly one report:

- ``ok``: scored, measured, written, published;
- ``rejected``: bad input (or the model failing on it). The report says why and what
  to do; the only datapoint is BatchesRejected;
- ``duplicate``: the same bytes as an earlier version of the key (``modelwatch.ledger``).
  The report names that version; nothing is published;
- AWS trouble (throttling, S3 errors) raises before any report, so Lambda retries the
  event and its dead-letter queue keeps it if the retries run out;
- a defect in modelwatch writes a ``failed`` report that says so, publishes nothing,
  and raises: the function's error alarm fires, and the event is retried, then kept.

Order of effects, all in ``process``: S3 GetObject, streamed to /tmp while its SHA-256
is computed; the ledger claim (DynamoDB UpdateItem); then a chunk of rows at a time
(``CHUNK_ROWS``): parse, validate, the chunk's ids in the prediction log
(BatchWriteItem), DynamoDB BatchGetItem of its actuals, predict, predictions appended to a
gzip file in /tmp; once the last chunk is in and the batch accepted: S3 PutObject of the
predictions; S3 PutObject of report.json, the key's newest report and
results/latest.json; the ledger's publish mark (with the predictions' S3 version); the
model's pool of small batches' quality totals in the ledger (GetItem; UpdateItem when a
batch with fewer than MinLabeledRows labeled rows adds to it, or one publishes what it
held); for a batch too small for drift or the estimate, the model's pools of small
batches' rows (modelwatch.row_pool: UpdateItem to add its rows, GetItem, UpdateItem when
it fills a pool and takes them all) and the reports written again, now saying what the
pools did; CloudWatch PutMetricData.

Memory follows the chunk, plus what the whole-batch measures rank (a classifier's
positive-class probability or a regressor's prediction: modelwatch.scoring.BatchMeasures)
and the duplicate ids' hashes, 8 bytes a row each up to a budget (~1 million rows),
beyond which they go to sorted runs on disk (modelwatch.sorted_runs), and a regressor's
labeled rows' predictions and actuals; /tmp holds the object (and its gunzipped content),
the predictions file and those runs, all in the batch's workspace.

Metrics go last and in one call, so a failure before them leaves no partial metrics, a
retry overwrites the files it already wrote, and the mark keeps a retry after a
successful PutMetricData from publishing again.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import io
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError
from pandas.api.types import infer_dtype

from modelwatch import clock as processing_clock
from modelwatch.actuals import RequestStats, fetch_actuals
from modelwatch.batch_files import CHUNK_ROWS, read_batch_chunks
from modelwatch.config import MonitorConfig
from modelwatch.drift import MIN_ROWS as DRIFT_MIN_ROWS
from modelwatch.errors import ActualsUnavailable, BatchRejected
from modelwatch.event_time import EventTime, TimestampScan, alarm_lookback, event_time_of, lag_note
from modelwatch.heap import release_free_memory
from modelwatch.ledger import (
    RETENTION_DAYS,
    BatchLedger,
    Claim,
    PoolTotals,
    add_to_pool,
    combine_pool,
    negated_pool,
    pool_rows,
    update_pool,
)
from modelwatch.metrics import (
    ROW_ADDITIVE_METRICS,
    MetricValue,
    of_row_totals,
    plain_values,
    publishable_metrics,
    row_totals,
    why_unpublishable,
)
from modelwatch.model_bundle import ModelBundle
from modelwatch.prediction_log import WRITE_CLIENT_CONFIG as PREDICTION_LOG_CLIENT_CONFIG
from modelwatch.prediction_log import PredictionLog
from modelwatch.promotion import CHAMPION_KEY, read_champion_pointer
from modelwatch.publishing import (
    CHAMPION_MISMATCH_METRIC,
    EVENT_TIME_CLOCK,
    EVENT_TIME_LAG_METRIC,
    LABELS_JOINED_METRIC,
    PROCESSING_TIME_METRICS,
    SIGNALS_UNAVAILABLE_METRIC,
    UPLOAD_TIME_METRICS,
    cloudwatch_accepts,
    metric_data,
    model_version_datum,
    publish_metrics,
)
from modelwatch.read_ahead import read_ahead
from modelwatch.report import BatchReport, ModelIdentity, Rejection, Scored
from modelwatch.results import PREDICTIONS_GZIP_LEVEL, BatchObject, ResultStore, SpooledBatch
from modelwatch.row_pool import (
    COUNTED,
    DRIFT,
    ENTRY_MAX_AGE_SECONDS,
    KINDS,
    PoolEntry,
    PoolRows,
    add_entry,
    entry_name,
    restore,
    take_if_full,
    withdraw,
)
from modelwatch.scoring import BatchMeasures, Measurement, Scorer, measure_pooled, predict, withheld_note
from modelwatch.validation import BatchChecker, ValidatedBatch

logger = logging.getLogger(__name__)

# Reads the ``actual`` of each id that has one (ids without a label are absent).
ActualsReader = Callable[[Sequence[str], RequestStats], Mapping[str, Any]]


def dynamodb_actuals(client: Any, table: str) -> ActualsReader:
    return lambda ids, stats: fetch_actuals(client, table, ids, stats=stats)


class Stopwatch:
    """Milliseconds per step, for the report's ``timings_ms``."""

    def __init__(self) -> None:
        self.started = self.mark = time.perf_counter()
        self.timings_ms: dict[str, float] = {}
        self.lock = threading.Lock()

    def lap(self, step: str) -> None:
        """Add the time since the last lap to ``step`` (a batch in chunks laps each step once a chunk)."""
        self.mark = self.add(step, self.mark)

    def add(self, step: str, since: float) -> float:
        """Add the time since ``since`` to ``step`` and return now: the read-ahead thread's
        own laps, which overlap the caller's (so the steps can add up to more than the total)."""
        now = time.perf_counter()
        name = f"{step}_ms"
        with self.lock:
            self.timings_ms[name] = self.timings_ms.get(name, 0.0) + (now - since) * 1000
        return now

    def total(self) -> dict[str, float]:
        return {**self.timings_ms, "total_ms": (time.perf_counter() - self.started) * 1000}


WORKSPACE_PREFIX = "modelwatch-"
# This process among earlier ones that had its pid (a Lambda sandbox restarted after a
# timeout or running out of memory can give the new runtime the old one's pid).
_PROCESS_TOKEN = uuid.uuid4().hex[:12]


def new_workspace() -> tempfile.TemporaryDirectory[str]:
    """A directory in /tmp for one batch, after removing those of dead processes.

    A batch's directory goes with its call, but not when Lambda kills the process
    (timeout, out of memory): Lambda keeps /tmp for the sandbox's next invocation, often
    the retry, which would then find the gigabyte of the killed one in its way. The name
    holds the pid and this process's token, so only directories of processes that are
    gone are removed (the local cloud runs several invocations side by side).
    """
    root = Path(tempfile.gettempdir())
    for directory in root.glob(f"{WORKSPACE_PREFIX}*-*-*"):
        pid, token = (directory.name.removeprefix(WORKSPACE_PREFIX).split("-") + ["", ""])[:2]
        if pid.isdigit() and (not _alive(int(pid)) or (int(pid) == os.getpid() and token != _PROCESS_TOKEN)):
            shutil.rmtree(directory, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"{WORKSPACE_PREFIX}{os.getpid()}-{_PROCESS_TOKEN}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# Characters that can make Python's csv writer quote a field (QUOTE_MINIMAL, the defaults:
# the delimiter, the quote, the line ends). Whether one does is left to the csv module
# (``_quoted``): Python 3.11 writes a field with a lone "\r" as it is.
_CSV_SPECIAL = (",", '"', "\r", "\n")

# An integer column spanning at most this many values is written through a table of their
# texts (a prediction's class index, a 0/1 flag): 8 times faster than str() per value.
_INT_TABLE_SPAN = 4096


def csv_text(table: pd.DataFrame, header: bool) -> str:
    """``table.to_csv(index=False, header=header)``, byte for byte, 2.5 times faster.

    Each column is turned to text once, as pandas does: float64 by repr (which reads back
    as the same float64; the list's repr is one C loop, a third faster than repr per
    value, and numpy's cast to str gives the same text three times slower), integers and
    booleans by str, text and objects by str, missing values empty. The rows are then one
    ``"".join`` of fields and separators, where pandas' writer (Python's csv module, a row
    at a time) was a fifth of the compute path. A field that may need quoting is written
    by the csv module itself, so the quoting is exactly pandas'. A column of any other
    type (dates, float32) is left to pandas. On a predictions table, the probabilities'
    repr is now about 60% of the time.
    """
    if not all(_fast_type(dtype) for dtype in table.dtypes):
        return table.to_csv(index=False, header=header)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow([str(name) for name in table.columns])
    rows, width = table.shape
    if not rows:
        return buffer.getvalue()
    columns = [_column_text(table.iloc[:, position]) for position in range(width)]
    if width == 1:  # the csv module writes a row of one empty field as "" (not an empty line)
        writer.writerows(zip(columns[0]))
        return buffer.getvalue()
    # Fields and separators interleaved by slice assignment (C loops), then joined once.
    parts = [","] * (2 * rows * width)
    for position, (texts, dtype) in enumerate(zip(columns, table.dtypes, strict=True)):
        # Numbers' texts hold no character the csv module quotes.
        parts[2 * position :: 2 * width] = texts if _numpy_number(dtype) else _quoted(texts)
    parts[2 * width - 1 :: 2 * width] = ["\n"] * rows
    buffer.write("".join(parts))
    return buffer.getvalue()


def _fast_type(dtype: Any) -> bool:
    return dtype == np.float64 or dtype.kind in "iubO" or isinstance(dtype, pd.StringDtype)


def _numpy_number(dtype: Any) -> bool:
    """float64, integers and booleans without missing values (pandas' nullable Int64 and
    boolean have the same kinds, and go the way of objects)."""
    return isinstance(dtype, np.dtype) and dtype.kind in "fiub"


def _column_text(column: pd.Series) -> list[str]:
    """Each value's text, as pandas writes it (unquoted)."""
    if _numpy_number(column.dtype):
        return _number_text(column.to_numpy())
    values = column.to_numpy(dtype=object)
    missing = pd.isna(values)
    if not missing.any():
        return _object_text(values, column.dtype)
    texts = np.full(len(values), "", dtype=object)
    texts[~missing] = _object_text(values[~missing], column.dtype)
    return texts.tolist()


def _object_text(values: np.ndarray, dtype: Any) -> list[str]:
    """The texts of values none of which is missing."""
    if isinstance(dtype, pd.StringDtype):
        return values.tolist()  # str already
    if infer_dtype(values, skipna=False) == "integer":
        # Integers only, Python's or numpy's (no bool, no float): the actuals column of a
        # model with integer classes, where str() per value was a seventh of the
        # predictions file's text. One too wide for int64 leaves them to str().
        with contextlib.suppress(OverflowError):
            return _number_text(values.astype(np.int64))
    return list(map(str, values.tolist()))


def _number_text(values: np.ndarray) -> list[str]:
    """float64 by repr (which reads back as the same float64), integers and booleans by str."""
    if values.dtype == np.float64:
        # repr of the list: the float reprs separated by ", " (which no float's repr holds).
        texts = repr(values.tolist())[1:-1].split(", ")
        return _blank(texts, np.isnan(values))
    if values.dtype.kind == "b":
        return np.array(["False", "True"], dtype=object)[values.view(np.uint8)].tolist()
    low, high = int(values.min()), int(values.max())
    if high - low < _INT_TABLE_SPAN:
        names = np.array([str(value) for value in range(low, high + 1)], dtype=object)
        return names[values - values.min()].tolist()
    return list(map(str, values.tolist()))


def _blank(texts: list[str], missing: np.ndarray) -> list[str]:
    for position in np.flatnonzero(missing).tolist():
        texts[position] = ""
    return texts


def _quoted(texts: list[str]) -> list[str]:
    """``texts`` with each field that holds a ``_CSV_SPECIAL`` character as the csv module
    writes it, quoted or not by the module's own rule (a lone "\\r" is not, in Python 3.11)."""
    joined = "".join(texts)
    if not any(mark in joined for mark in _CSV_SPECIAL):
        return texts
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for position, text in enumerate(texts):
        if any(mark in text for mark in _CSV_SPECIAL):
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([text])  # one field, not empty: written as in any row, then "\n"
            texts[position] = buffer.getvalue()[:-1]
    return texts


class PredictionsFile:
    """predictions.csv.gz written a chunk of rows at a time.

    A chunk is compressed on a thread of its own while the next chunk is read, validated
    and scored: zlib releases the GIL, and gzip was a fifth of the write step. At most one
    chunk's text waits for it, so memory still follows the chunk.

    mtime=0: the same predictions give the same bytes, so a retried batch rewrites an
    identical object.
    """

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] | None = None
        self.file: gzip.GzipFile | None = None
        self.compressor: ThreadPoolExecutor | None = None
        self.pending: Future[int] | None = None
        self.written = 0  # bytes of text handed to the compressor

    def __enter__(self) -> PredictionsFile:
        self.file = gzip.GzipFile(self.path, "wb", compresslevel=PREDICTIONS_GZIP_LEVEL, mtime=0)
        self.compressor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predictions-gzip")
        return self

    def write(self, table: pd.DataFrame) -> None:
        assert self.file is not None and self.compressor is not None
        names = [str(column) for column in table.columns]
        if self.columns is None:
            self.columns = names
        elif names != self.columns:
            added = [name for name in names if name not in self.columns]
            if added:
                self._widen(added)
            table = table.reindex(columns=self.columns)
        text = csv_text(table, header=self.written == 0).encode("utf-8")
        self._wait()
        self.pending = self.compressor.submit(self.file.write, text)
        self.written += len(text)

    def _wait(self) -> None:
        """Until the chunk being compressed is in the file (its error, if any, raised here)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def _widen(self, added: list[str]) -> None:
        """Rewrite the rows so far with empty ``added`` columns: a JSONL batch's passthrough
        column may first appear in a later chunk, and the file has the whole batch's columns.
        The rows are copied as the text they were written as."""
        assert self.file is not None and self.columns is not None
        self._wait()
        self.file.close()
        earlier = self.path.with_name(self.path.name + ".earlier")
        self.path.rename(earlier)
        self.columns = self.columns + added
        self.file = gzip.GzipFile(self.path, "wb", compresslevel=PREDICTIONS_GZIP_LEVEL, mtime=0)
        with pd.read_csv(
            earlier, dtype=str, keep_default_na=False, compression="gzip", chunksize=CHUNK_ROWS
        ) as rows:
            for part in rows:
                part = part.reindex(columns=self.columns, fill_value="")
                self.file.write(part.to_csv(index=False, header=self.file.tell() == 0).encode("utf-8"))
        earlier.unlink()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self.file is not None and self.compressor is not None
        try:
            if kind is None:
                self._wait()
            elif self.pending is not None:
                # The exception on its way out (a rejected batch) is the outcome, not a
                # failure to write a file that will not be uploaded.
                self.pending.exception()
        finally:
            self.compressor.shutdown()
            self.file.close()


@dataclasses.dataclass
class _RowPoolStep:
    """What one publish did to the pools of small batches' rows, by pool kind."""

    added: dict[str, str] = dataclasses.field(default_factory=dict)  # this batch's entry
    taken: dict[str, list[PoolEntry]] = dataclasses.field(default_factory=dict)


class BatchMonitor:
    """The warm state (model, clients) and the flow of one batch."""

    def __init__(
        self,
        config: MonitorConfig,
        bundle: ModelBundle,
        store: ResultStore,
        read_actuals: ActualsReader,
        cloudwatch: Any,
        ledger: BatchLedger,
        prediction_log: PredictionLog,
        clock: Callable[[], datetime] | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ):
        self.config = config
        self.bundle = bundle
        self.store = store
        self.read_actuals = read_actuals
        self.cloudwatch = cloudwatch
        self.ledger = ledger
        self.prediction_log = prediction_log
        # The processing time: the wall clock in Lambda, a replay's virtual clock locally.
        self.clock = clock or processing_clock.now
        self.chunk_rows = chunk_rows
        self.scorer = Scorer(bundle, config.min_labeled_rows, config.drift_threshold)
        self.model = ModelIdentity(config.model_name or bundle.metadata.name, bundle.metadata.version)

    @classmethod
    def from_config(cls, config: MonitorConfig) -> BatchMonitor:
        """The batch-monitor function's warm state: model from the layer, one client per service."""
        from modelwatch.aws import client
        from modelwatch.model_bundle import load_bundle

        return cls(
            config,
            load_bundle(config.model_dir),
            store=ResultStore(client("s3")),
            read_actuals=dynamodb_actuals(client("dynamodb"), config.actuals_table),
            cloudwatch=client("cloudwatch"),
            # A batch stays in the ledger as long as its rows wait in the prediction log.
            ledger=BatchLedger(
                client("dynamodb"),
                config.ledger_table,
                retention_days=max(RETENTION_DAYS, config.prediction_log_days),
            ),
            prediction_log=PredictionLog(
                client("dynamodb", config=PREDICTION_LOG_CLIENT_CONFIG),
                config.prediction_log_table,
                config.prediction_log_days,
            ),
        )

    def process(self, batch: BatchObject, announced_at: datetime | None = None) -> BatchReport:
        """Score one object version. ``announced_at``: the S3 event's time (S3's clock: when the
        upload was announced), which stamps LabelsJoined; the processing time when not given."""
        watch = Stopwatch()
        now = self.clock()
        upload_time = now
        claim: Claim | None = None
        # The batch and its predictions on local disk (/tmp in Lambda), gone with the call.
        workspace = new_workspace()
        try:
            spooled = self.store.spool_batch(
                batch, self.config.max_batch_bytes, Path(workspace.name) / "batch"
            )
            upload_time = spooled.upload_time
            # An event without a version (a bucket without versioning, a hand-made
            # event) is the version read.
            batch = dataclasses.replace(batch, version_id=batch.version_id or spooled.version_id)
            claim = self.ledger.claim(batch, spooled.digest, self._model_key)
            if claim.duplicate_of is not None:
                return self._duplicate(batch, claim.duplicate_of, upload_time, now, watch)
            earlier = self.ledger.claim_content(batch, spooled.digest, self._model_key, claim.item_id)
            if earlier is not None:
                return self._duplicate(batch, earlier, upload_time, now, watch)
            watch.lap("s3_read")
            report = self._score(batch, spooled, claim, Path(workspace.name), now, watch)
        except BatchRejected as rejection:
            # Codes and positions only: the reason may quote cell values (personal data).
            logger.warning("batch rejected", extra={"code": rejection.code, "detail": rejection.log_safe})
            report = self._unscored_report("rejected", batch, rejection, upload_time, now)
        except (ClientError, BotoCoreError, ActualsUnavailable):
            self._attempt_failed(claim)
            raise  # AWS trouble: Lambda retries the event, then the dead-letter queue keeps it
        except Exception as defect:
            logger.exception("batch failed with a defect in modelwatch")
            self._attempt_failed(claim)
            failure = BatchRejected(
                f"modelwatch could not process {batch.key!r}: {type(defect).__name__}: {defect}. "
                "This is a defect in modelwatch, not in the file: the event is retried, then kept in "
                "the dead-letter queue, and can be replayed once the defect is fixed (the function's "
                "log has the traceback)",
                code="internal_error",
            )
            report = self._unscored_report("failed", batch, failure, upload_time, now)
            report.timings_ms = watch.total()
            self.store.write_report(batch, report.to_dict())
            raise
        finally:
            workspace.cleanup()
        report.timings_ms = watch.total()
        try:
            self.store.write_report(batch, report.to_dict())
            if claim is None:
                # Rejected before its bytes were read (deleted, too large): the version is the content.
                claim = self.ledger.claim(batch, f"unread:{batch.version_id or batch.etag}", self._model_key)
            self._publish_once(claim, report, announced_at)
        except Exception:
            self._attempt_failed(claim)  # unpublished: Lambda retries the event
            raise
        return report

    def _attempt_failed(self, claim: Claim | None) -> None:
        """Tell the label join, which waits for a batch whose ids are logged, that this
        attempt is over (best effort: AWS may be what failed)."""
        if claim is None or claim.duplicate_of is not None:
            return
        try:
            self.ledger.mark_failed(claim)
        except (ClientError, BotoCoreError):
            logger.warning("could not mark the failed attempt in the ledger", exc_info=True)

    def _publish_once(self, claim: Claim, report: BatchReport, announced_at: datetime | None = None) -> None:
        # The mark also settles the batch for the label join: where it is, when, and the
        # row-additive totals it contributed, published or pooled (a batch publishing
        # nothing is settled too), so a later join adds only the difference.
        quality = {
            name: row_totals(value)
            for name, value in report.published.items()
            if name in ROW_ADDITIVE_METRICS and value.rows is not None and value.row_sum is not None
        }
        pooled = {name: row_totals(value) for name, value in report.pooled.items()}
        totals = {name: (rows, total) for name, (rows, total, _, _) in {**quality, **pooled}.items()}
        live = report.scored.live if report.scored else True
        # None for a batch that was not scored (rejected): the label join has nothing to join.
        predictions_version = report.scored.predictions_version_id if report.scored else None
        if (
            not self.ledger.mark_published(
                claim, report.batch, report.event_time, totals, live, predictions_version
            )
            or not report.published
        ):
            return  # an earlier attempt published it, or nothing to publish
        event_time = datetime.fromisoformat(report.event_time)
        by_version = (
            [model_version_datum(self.model.name, self.model.version, event_time)]
            if "BatchesProcessed" in report.published
            else []
        )
        # The lag is stamped when the batch was processed, not with its event time: it is what
        # tells that the other datapoints landed where the alarms no longer look.
        at_processing = {
            name: value for name, value in report.published.items() if name in PROCESSING_TIME_METRICS
        }
        processed_at = datetime.fromisoformat(report.processed_at)
        # The labels found at upload (and those that are none of the classes) met their batch
        # when it arrived: stamped with S3's time of the announcement, as the label join stamps
        # with DynamoDB's time of the write, so a retried event keeps its time and a replay's
        # uploads (announced on its virtual clock) land in the periods its alarms evaluate.
        # Never later than the truth (a skewed clock included), so never a false OK.
        joined_at = (
            min(announced_at, processed_at)
            if announced_at is not None and cloudwatch_accepts(announced_at, processed_at)
            else processed_at
        )
        at_upload = {name: value for name, value in report.published.items() if name in UPLOAD_TIME_METRICS}
        at_event_time = {
            name: value
            for name, value in report.published.items()
            if name not in at_processing and name not in at_upload
        }
        flushed: PoolTotals = {}
        pool_updated = False
        row_pools = _RowPoolStep()
        try:
            flushed = add_to_pool(
                self.ledger, self.model.name, pooled, pool_rows(quality), self.config.min_labeled_rows
            )
            pool_updated = True
            # What the pool gave joins this batch's own quality datapoints (the pool's rows
            # plus this batch's when it completed the pool): QualityAlarm judges them in the
            # period the monitor stamps quality with, the batch's event time.
            at_event_time.update(
                {name: of_row_totals(value) for name, value in combine_pool(quality, flushed).items()}
            )
            if report.pool_rows:
                # A pool this batch filled: its drift or estimate, stamped like the batch's own.
                for name, value in self._settle_row_pools(claim, report, row_pools).items():
                    (at_processing if name in PROCESSING_TIME_METRICS else at_event_time)[name] = value
                # The report written before the mark said only that the rows went to the pools.
                self._write_pool_sections(report)
            publish_metrics(
                self.cloudwatch,
                self.config.metrics_namespace,
                metric_data(at_event_time, self.model.name, event_time)
                + metric_data(at_processing, self.model.name, processed_at)
                + metric_data(at_upload, self.model.name, joined_at)
                # The batch's own row-additive quality metrics in the by-event-time series
                # (the dashboard's, no alarm), which the label join adds to at the batch's
                # event time: a small batch's too, which the alarms' series gets pooled.
                + metric_data(
                    {name: of_row_totals(value) for name, value in {**quality, **pooled}.items()},
                    self.model.name,
                    event_time,
                    clock=EVENT_TIME_CLOCK,
                )
                + by_version,
            )
        except Exception:
            # The mark first, so the retry publishes (unless a label join advanced the batch
            # meanwhile: then it stays, see unmark_published). If that fails, the mark is
            # taken to stand: no retry adds this batch's totals again.
            try:
                unmarked = self.ledger.unmark_published(claim)
            except Exception:
                unmarked = False
            # The row pools first: _return_row_pools logs its own failures, and the quality
            # pool's give-back below may raise.
            if row_pools.added or row_pools.taken:
                self._return_row_pools(row_pools, unmarked)
            if pool_updated and (flushed or pooled):
                # Put back what was taken from the pool, less this batch's own totals when the
                # retry adds them again (a batch that did not fill the pool left them there).
                # If this fails, the rows are lost, never counted twice.
                give_back = combine_pool(flushed, negated_pool(pooled)) if unmarked else flushed
                if give_back:
                    update_pool(self.ledger, self.model.name, give_back, math.inf)
            raise

    @property
    def _model_key(self) -> str:
        """The model part of the ledger's identity: after a new model version, the same
        bytes are a new batch (scored by the new model)."""
        return f"{self.model.name}@{self.model.version}"

    def _duplicate(
        self,
        batch: BatchObject,
        original: BatchObject,
        upload_time: datetime,
        now: datetime,
        watch: Stopwatch,
    ) -> BatchReport:
        logger.info("duplicate of an earlier version", extra={"duplicate_of": original.version_id})
        stamp = upload_time if cloudwatch_accepts(upload_time, now) else now
        same_key = original.key == batch.key
        note = (
            "the same bytes as this earlier version of the key: counted once, with that version's "
            "results and metrics; nothing was published for this one"
            if same_key
            else f"the same bytes as the batch of {original.key!r}, which this model scored: counted "
            "once, with that batch's results and metrics; nothing was published for this one. An "
            "upstream re-sending an old export under new keys publishes nothing new, so "
            "StalenessAlarm tells; to score the file again, change it or deploy a new model version"
        )
        report = BatchReport(
            status="duplicate",
            batch=batch,
            model=self.model,
            processed_at=self.clock().isoformat(),
            event_time=stamp.isoformat(),
            uploaded_at=upload_time.isoformat(),
            duplicate_of={
                **({} if same_key else {"key": original.key}),
                "version_id": original.version_id,
                "report": f"s3://{original.bucket}/{original.report_key}",
                "note": note,
            },
        )
        report.timings_ms = watch.total()
        # Only this version's report: the key's newest report keeps the original's results.
        # (Another key's: this key has no other report.)
        self.store.write_report(batch, report.to_dict(), newest=not same_key)
        return report

    # -- steps ----------------------------------------------------------------------------

    def _score(
        self,
        batch: BatchObject,
        spooled: SpooledBatch,
        claim: Claim,
        workspace: Path,
        now: datetime,
        watch: Stopwatch,
    ) -> BatchReport:
        """Read, validate, predict, join actuals, measure and write, ``chunk_rows`` rows at a
        time, so memory follows the chunk (and BatchMeasures' few bytes a row), not the file.

        Predictions go to a file on local disk, uploaded only once the whole batch is
        accepted (the share of invalid rows is the batch's). Only the prediction log is
        written as the chunks go, before their actuals are read (modelwatch.prediction_log
        says why); a rejected batch's logged ids join nothing.
        """
        metadata = self.bundle.metadata
        key = batch.key
        # What they keep a row goes to disk past a budget, in the workspace (gone with the call).
        measures = BatchMeasures(self.scorer, workspace)
        checker = BatchChecker(metadata, key, workspace)
        timestamps = TimestampScan(metadata.timestamp_column, now)
        stats = RequestStats()

        def checked_chunks() -> Iterator[tuple[ValidatedBatch, Mapping[str, Any]]]:
            """Each chunk read, validated and matched with its actuals: run a chunk ahead of
            the model, in a second thread (modelwatch.read_ahead)."""
            started = time.perf_counter()
            for chunk in read_batch_chunks(spooled.path, key, self.config.max_batch_bytes, self.chunk_rows):
                checked, frame = checker.check(chunk.frame, chunk.first_row)
                timestamps.add(frame)
                del frame, chunk
                started = watch.add("read_validate", started)
                if checked.ids.empty:
                    continue
                ids = checked.ids.tolist()
                # Logged before their actuals are read, so a label written meanwhile is read
                # here or joined later (modelwatch.prediction_log), never neither.
                self.prediction_log.record(claim.item_id, ids)
                started = watch.add("log", started)
                actuals = self.read_actuals(ids, stats)
                del ids
                started = watch.add("actuals", started)
                yield checked, actuals
                started = time.perf_counter()

        predictions_path = workspace / "predictions.csv.gz"
        with (
            PredictionsFile(predictions_path) as predictions_file,
            contextlib.closing(read_ahead(checked_chunks())) as chunks,
        ):
            for checked, actuals in chunks:
                watch.lap("wait_for_read")
                predictions = predict(self.bundle, checked.features, key)
                watch.lap("predict")
                actual_values = measures.add(checked, predictions, actuals)
                watch.lap("measure")
                predictions_file.write(self.scorer.predictions_table(checked, predictions, actual_values))
                del checked, actuals, predictions, actual_values
                release_free_memory()  # else RSS grows ~35 bytes a row (modelwatch.heap)
                watch.lap("write")
            watch.lap("wait_for_read")
        validated = checker.finish(self.config.max_invalid_row_percent)
        if checker.totals.valid == 0:
            raise BatchRejected(
                f"no row of {key!r} is valid; see invalid_rows",
                code="no_valid_rows",
                invalid_rows=validated.invalid_rows,
            )
        event_time = event_time_of(timestamps, spooled.batch_time, spooled.upload_time, now)
        measured = measures.finish(validated.findings)
        watch.lap("measure")
        outputs, predictions_version = self.store.upload_predictions(batch, predictions_path)
        watch.lap("write")
        report = self._scored_report(batch, validated, event_time, measured, stats.requests, outputs)
        assert report.scored is not None
        report.scored.predictions_version_id = predictions_version
        report.uploaded_at = spooled.upload_time.isoformat()
        return report

    def _scored_report(
        self,
        batch: BatchObject,
        validated: ValidatedBatch,
        event_time: EventTime,
        measured: Measurement,
        actuals_requests: int,
        outputs: dict[str, str],
    ) -> BatchReport:
        rows_scored = measured.rows_scored
        notes = list(event_time.notes)
        processed_at = self.clock()
        if self.config.model_name and self.config.model_name != self.bundle.metadata.name:
            notes.append(
                f"metrics are published as ModelName={self.config.model_name!r} (the template's ModelName); "
                f"the model calls itself {self.bundle.metadata.name!r} in metadata.json"
            )
        published = dict(measured.published)
        unavailable = self._quality_metric_unavailable() + measured.unavailable
        # Every scored batch says how many watched signals it could not give, 0 included, so
        # SignalsUnavailableAlarm has data and returns to OK once they are back.
        published[SIGNALS_UNAVAILABLE_METRIC] = MetricValue(float(len(unavailable)))
        if unavailable:
            # The count only: an exception's text in a note may quote cell values (personal data).
            logger.error(
                "signals the alarms watch are unavailable; the report's notes say which and why",
                extra={"signals_unavailable": len(unavailable)},
            )
        notes.extend(f"SignalsUnavailable: {note}" for note in unavailable)
        mismatch = self._champion_mismatch(batch.bucket)
        if mismatch is not None:
            published[CHAMPION_MISMATCH_METRIC] = MetricValue(1.0 if mismatch else 0.0)
            if mismatch:
                notes.append(mismatch)
        if event_time.live:
            lag = processed_at - event_time.moment
            published[EVENT_TIME_LAG_METRIC] = MetricValue(lag.total_seconds())
            # LabelsStaleAlarm's metric for the labels found at upload (0 included, so the graph
            # shows batches that found none); a backfill CloudWatch refuses publishes nothing, and
            # its labels, written who knows when, say nothing about today's feed anyway.
            published[LABELS_JOINED_METRIC] = MetricValue(float(measured.rows_labeled))
            config = self.config
            if lag > alarm_lookback(config.alarm_period_seconds, config.evaluation_periods):
                notes.append(
                    lag_note(event_time, lag, config.alarm_period_seconds, config.evaluation_periods)
                )
        # Pooled only when live: a backfill CloudWatch refuses adds nothing anywhere.
        pooled = measured.pooled if event_time.live else {}
        withheld = measured.quality_withheld
        if pooled:
            withheld = withheld_note(measured.rows_labeled, self.config.min_labeled_rows, pooled)
        pool_rows = measured.pool_rows if event_time.live else {}
        for kind in pool_rows:
            section = measured.drift if kind == DRIFT else measured.estimation
            section["pool"] = self._pool_note(kind, rows_scored)
        return BatchReport(
            status="ok",
            batch=batch,
            model=self.model,
            processed_at=processed_at.isoformat(),
            event_time=event_time.moment.isoformat(),
            uploaded_at="",
            # A backfill too old (or too far ahead) for CloudWatch publishes nothing.
            published=published if event_time.live else {},
            pooled=pooled,
            pool_rows=pool_rows,
            scored=Scored(
                event_time_source=event_time.source,
                notes=notes,
                rows=validated.rows_read,
                rows_scored=rows_scored,
                rows_invalid=validated.invalid_row_count,
                labeled_rows=measured.rows_labeled,
                label_coverage=measured.rows_labeled / rows_scored,
                metrics=plain_values({**measured.quality, **measured.estimated}),
                live=event_time.live,
                quality_metrics_withheld=withheld,
                invalid_rows=validated.invalid_rows,
                invalid_by_reason=validated.invalid_by_reason,
                data_quality=measured.findings,
                drift=measured.drift,
                estimated_performance=measured.estimation,
                actuals_requests=actuals_requests,
                outputs=outputs,
                reference=self._reference(),
            ),
        )

    def _pool_threshold(self, kind: str) -> int:
        return DRIFT_MIN_ROWS if kind == DRIFT else self.config.min_labeled_rows

    def _pool_note(self, kind: str, rows: int) -> dict[str, Any]:
        """The drift or estimated_performance section's word on a small batch's rows."""
        needed = self._pool_threshold(kind)
        metrics = (
            "DriftScore, DriftedFeatures and PredictionDrift" if kind == DRIFT else "the Estimated* metrics"
        )
        return {
            "status": "pooled",
            "rows": rows,
            "needed": needed,
            "note": f"this batch's {rows} rows went to the model's {kind} pool of small batches' rows: "
            f"{metrics} are published over the pooled rows, with the batch that brings the pool to "
            f"{needed} rows (entries older than {ENTRY_MAX_AGE_SECONDS // 86_400} days are dropped)",
        }

    def _settle_row_pools(
        self, claim: Claim, report: BatchReport, step: _RowPoolStep
    ) -> dict[str, MetricValue]:
        """Put a small batch's rows in the model's drift and estimate pools; when a pool then
        holds enough rows, take them out and compute drift or the estimate over them as one
        batch. Returns those datapoints (published with this batch's); the report's drift
        and estimated_performance sections say what happened. ``step`` records what was
        added and taken, for ``_return_row_pools`` if publishing fails."""
        scored = report.scored
        published: dict[str, MetricValue] = {}
        if scored is None:
            return published
        batch = report.batch
        for kind, rows in report.pool_rows.items():
            section = scored.drift if kind == DRIFT else scored.estimated_performance
            note = section.setdefault("pool", self._pool_note(kind, rows.rows))
            entry = PoolEntry(
                name=entry_name(claim.item_id),
                rows=rows.rows,
                added_at=int(self.ledger.clock()),
                batch=f"s3://{batch.bucket}/{batch.key}",
                version_id=batch.version_id or "",
                data=rows.encode(),
            )
            refused = add_entry(self.ledger, self._model_key, kind, entry)
            if refused is not None:
                note["status"] = "counted" if refused == COUNTED else "not_pooled"
                note["note"] = (
                    f"this batch's rows were pooled by an earlier attempt and published with another "
                    f"batch's pooled {kind} datapoints"
                    if refused == COUNTED
                    else f"this batch's rows were not pooled: {rows.rows} rows take {len(entry.data)} bytes "
                    "compressed, more than the pool's DynamoDB item can hold with other batches' rows"
                )
                logger.warning("small batch's rows not pooled", extra={"pool": kind, "reason": refused})
                if refused == COUNTED:
                    continue
                # Too large: this batch's drift or estimate is computed nowhere, which must not
                # look like a healthy feed (a model too wide for the pool refuses every batch).
                what = (
                    "drift (DriftScore, DriftedFeatures, PredictionDrift; DriftAlarm)"
                    if kind == DRIFT
                    else "the performance estimate (Estimated* metrics; EstimatedQualityAlarm)"
                )
                self._count_unavailable(
                    report,
                    published,
                    f"{what} was not computed: this batch's {rows.rows} rows are fewer than the "
                    f"{note['needed']} it needs, and the model's {kind} pool of small batches' rows "
                    f"could not take them ({len(entry.data)} bytes compressed). Fix: send batches of "
                    f"{note['needed']} rows or more",
                )
                # Too large: the pool is still read, so its stale entries leave and make room.
            else:
                step.added[kind] = entry.name
            taken = take_if_full(self.ledger, self._model_key, kind, self._pool_threshold(kind))
            if not taken.entries:
                note["pool_rows"] = taken.held_rows
                note["note"] += f"; the pool holds {taken.held_rows} of the {note['needed']} rows"
                if refused is None and taken.held_rows == 0:
                    # Another batch's take, between this add and this take, had this batch's rows.
                    note["note"] += (
                        f" (this batch's rows were taken with another batch's pooled {kind} datapoints)"
                    )
                continue
            step.taken[kind] = taken.entries
            try:
                pooled = PoolRows.concatenate([PoolRows.decode(each.data) for each in taken.entries])
                metrics, computed = measure_pooled(self.scorer, kind, pooled)
            except Exception as problem:  # noqa: BLE001 - like the batch's own drift: advisory
                # Entries that cannot be computed together (a model re-packaged under the same
                # version) would fail every batch that takes them: they are dropped, and said so.
                logger.exception("pooled rows could not be measured; dropped", extra={"pool": kind})
                step.taken.pop(kind)
                section["pool_error"] = (
                    f"the {len(taken.entries)} pooled batches' rows could not be measured together "
                    f"({type(problem).__name__}: {problem}); they were dropped from the {kind} pool"
                )
                self._count_unavailable(
                    report,
                    published,
                    f"{kind} over the pooled rows of {len(taken.entries)} small batches was not computed "
                    f"({type(problem).__name__}); the rows were dropped from the pool. The function's log "
                    "has the traceback",
                )
                continue
            computed["pooled"] = {
                "rows": pooled.rows,
                "batches": [
                    each.summary() for each in sorted(taken.entries, key=lambda e: (e.added_at, e.batch))
                ],
                "note": f"computed over the rows of these small batches as one batch of {pooled.rows} rows "
                f"(each had fewer than the {note['needed']} rows needed on its own), and published with "
                "this batch",
            }
            if kind == DRIFT:
                scored.drift = computed
            else:
                scored.estimated_performance = computed
                scored.metrics.update(plain_values(metrics))
            published.update(metrics)
        report.published.update(published)
        return published

    @staticmethod
    def _count_unavailable(report: BatchReport, published: dict[str, MetricValue], note: str) -> None:
        """One more signal the alarms watch that this batch could not give: SignalsUnavailable
        goes up by one in ``published`` (from the report's count) and the report says why."""
        assert report.scored is not None
        count = published.get(SIGNALS_UNAVAILABLE_METRIC) or report.published.get(SIGNALS_UNAVAILABLE_METRIC)
        published[SIGNALS_UNAVAILABLE_METRIC] = MetricValue((count.value if count else 0.0) + 1.0)
        report.scored.notes.append(f"SignalsUnavailable: {note}")

    def _write_pool_sections(self, report: BatchReport) -> None:
        """The pools' outcome into the stored report, not over it: a label join may have
        rewritten it since the mark (its labels, coverage and metrics stay)."""
        fresh = report.to_dict()
        current = self.store.read_report(report.batch) or fresh
        for key in ("drift", "estimated_performance", "metrics_published"):
            current[key] = fresh.get(key)
        notes = list(current.get("notes") or [])
        current["notes"] = notes + [note for note in fresh.get("notes") or [] if note not in notes]
        estimated = {name: value for name, value in fresh["metrics"].items() if name.startswith("Estimated")}
        current["metrics"] = {**(current.get("metrics") or {}), **estimated}
        self.store.write_report(report.batch, current)

    def _return_row_pools(self, step: _RowPoolStep, unmarked: bool) -> None:
        """Publishing failed: the entries taken go back to their pools. When the retry is to
        publish this batch (``unmarked``) its own entry leaves the pool, for the retry to add
        again; else it stays, to be counted once with a later batch."""
        for kind in KINDS:
            own = step.added.get(kind)
            taken = step.taken.get(kind, [])
            try:
                restore(
                    self.ledger,
                    self._model_key,
                    kind,
                    [each for each in taken if not unmarked or each.name != own],
                )
                if unmarked and own is not None and all(each.name != own for each in taken):
                    withdraw(self.ledger, self._model_key, kind, own)
            except Exception:  # noqa: BLE001 - the publish failure is what the caller raises
                # The taken rows are lost rather than counted twice.
                logger.exception("could not put the taken rows back in the pool", extra={"pool": kind})

    def _quality_metric_unavailable(self) -> list[str]:
        """The note when QualityAlarm's metric is one this model never publishes: the alarm
        would stay in its state forever (`modelwatch model check` refuses it before a deploy)."""
        metric = self.config.quality_metric
        metadata = self.bundle.metadata
        kind = (metadata.task, len(metadata.classes), self.bundle.has_probabilities)
        problem = why_unpublishable(metric, *kind) if metric else None
        if problem is None:
            return []
        return [
            f"QualityMetric {metric!r} (QualityAlarm) is never published for this model: {problem}. "
            "QualityAlarm keeps its last state whatever the model does. Fix: deploy with a QualityMetric "
            f"this model publishes ({', '.join(publishable_metrics(*kind))}) and a QualityThreshold and "
            "QualityComparison to suit; `modelwatch model check` checks it before a deploy"
        ]

    def _champion_mismatch(self, bucket: str) -> str | None:
        """None before any promotion (nothing to compare); "" when the loaded model is the
        promoted champion; else the note saying it is not, or that the pointer could not be
        read (which counts as a mismatch), and how to fix it.

        A `sam deploy` without ModelLayerVersionArn puts the built model layer back: the
        promotion is silently undone unless this says so (ChampionMismatch, its alarm)."""
        # Read with every batch, not once per sandbox: a promotion that switched this
        # function's configuration but failed on another, or a pointer written after this
        # sandbox started, would otherwise show as 0 until the next cold start.
        try:
            pointer, _ = read_champion_pointer(self.store.s3, bucket)
            if pointer is not None and not (isinstance(pointer, dict) and pointer.get("version")):
                raise ValueError("expected a JSON object with the champion's version")
        except (ClientError, BotoCoreError, ValueError) as problem:
            # Unverified is not healthy: with no datapoint the alarm would stay OK over a
            # model that may have been reverted.
            logger.error("could not read the champion pointer", extra={"error": str(problem)})
            return (
                f"could not read the promoted champion from s3://{bucket}/{CHAMPION_KEY} ({problem}), so "
                f"whether model version {self.bundle.metadata.version} is the champion is unknown; "
                "ChampionMismatch is 1 until it can be read. Check the file (`modelwatch model "
                "champion`) and the function's s3:GetObject permission on it"
            )
        if pointer is None:
            return None
        if str(pointer.get("version")) == self.bundle.metadata.version:
            return ""
        logger.error(
            "the model layer does not hold the promoted champion",
            extra={"loaded": self.bundle.metadata.version, "champion": pointer.get("version")},
        )
        return (
            f"scored by model version {self.bundle.metadata.version}, but the promoted champion is "
            f"{pointer.get('version')} (s3://{bucket}/{CHAMPION_KEY}, since {pointer.get('since')}): a "
            "deploy without ModelLayerVersionArn put the built model back? Deploy with --parameter-overrides "
            f"ModelLayerVersionArn={pointer.get('layer_version_arn')}, or promote again"
        )

    def _reference(self) -> dict[str, Any]:
        config = self.config
        alarm = {"metric": config.quality_metric, "threshold": config.quality_threshold}
        alarm["comparison"] = config.quality_comparison
        reference: dict[str, Any] = {"metrics": self.bundle.baseline.get("reference_metrics", {})}
        if config.quality_metric and config.quality_threshold is not None:
            reference["quality_alarm"] = alarm
        return reference

    def _unscored_report(
        self,
        status: Any,
        batch: BatchObject,
        rejection: BatchRejected,
        upload_time: datetime,
        now: datetime,
    ) -> BatchReport:
        stamp = upload_time if cloudwatch_accepts(upload_time, now) else now
        return BatchReport(
            status=status,
            batch=batch,
            model=self.model,
            processed_at=self.clock().isoformat(),
            event_time=stamp.isoformat(),
            uploaded_at=upload_time.isoformat(),
            # A failed batch publishes nothing: the function's error alarm reports it.
            published={"BatchesRejected": MetricValue(1.0)} if status == "rejected" else {},
            rejection=Rejection(rejection.reason, rejection.code, dict(rejection.details)),
        )
