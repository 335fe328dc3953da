"""Late labels: actuals that arrive after their batch are joined to its logged predictions.

The trigger is the actuals table's stream, so every way labels arrive (an actuals/ file,
``modelwatch actuals load``, any other writer) is joined the same way. For each batch
that scored one of the changed record ids (the prediction log says which):

1. the batch's predictions file (S3, at the version the ledger names) and the current
   actuals (DynamoDB, strongly consistent) give its metrics as of now, computed with
   scikit-learn exactly as the batch monitor does. The actuals table is the truth, not
   the stream records: a redelivered record, a file loaded twice or a label written
   twice changes nothing, and a corrected label simply replaces the old one. A batch of
   up to ``FULL_RECHECK_ROWS`` rows has the actuals of all its rows read again (which
   also finds a label whose stream record was lost); a larger one only those of the
   arrived labels, the other rows keeping the labels the file holds: every write to the
   table reaches a join through the stream, and each join leaves what it read in the
   file, so the file holds every label joined so far (not one whose stream records were
   all discarded after failed retries: writing it again repairs that), and a join's
   DynamoDB reads cost what its labels cost, not what the batch does;
2. the row-additive metrics (ErrorRate, Accuracy, MAE, MSE, MAPE, MeanError) have
   totals (rows, sum of per-row values); the ledger keeps the totals already published
   for the batch, and only the difference is published, so CloudWatch's Average over
   every datapoint is the metric over every labeled row, each counted once;
3. the predictions file is rewritten (a new S3 version); the ledger's totals and that
   version advance together with a revision check before publishing (if PutMetricData
   fails, both go back, or, when another join advanced the batch meanwhile, this join's
   part is taken out of the newer totals: either way the retry publishes it); then
   report.json. A join that loses the revision race reads the winner's file version and
   goes again, so two joins of one batch at once never drop each other's labels.

A label can arrive while its batch is still being scored (the monitor logs each chunk's
ids before reading their actuals): the join waits for the batch to be published.

Time: the differences are stamped when the labels arrived (the stream records' creation
time, DynamoDB's clock), not with the batch's event time, so QualityAlarm (which only
evaluates recent periods) reacts within one period of the labels, however late they
are. The batch's report keeps the error by event time.

A batch with fewer than MinLabeledRows labeled rows (so far) is not judged: what its
labels add to the row-additive totals goes to the model's pool in the ledger
(modelwatch.ledger), published with other batches' once there are MinLabeledRows rows
(or with this invocation's judged batches' additions once the two make that many); its
by-event-time datapoints go out on their own (the dashboard's series, no alarm). If
publishing fails, the pool gets back what was taken from it, less the additions the next
join makes again (those whose batch totals went back).

The non-additive metrics (ROCAUC, F1, Precision, Recall, R2, RMSE, LogLoss) are
recomputed in the batch's report; of them, only the one QualityAlarm watches (QualityMetric)
is published, one value per judged batch at the arrival time: published again, a batch's
value weighs it twice in a period's Average, but without it a QualityAlarm on F1 would
never see a late label. A corrected label with no new label
in the same batch changes the sums but not the row count; CloudWatch refuses a
datapoint of zero samples, so that correction waits in the ledger and goes out with
the batch's next new labels (the report shows it at once). A batch that was a backfill
CloudWatch could not take publishes nothing late either (issue 10's rule): its labels
are counted in LabelsArrived and its report is updated.

What cannot be joined is counted, never dropped unseen: labels of rows no logged batch
scored (LabelsWithoutPrediction; also, harmlessly, labels written before their batch is
scored, which the batch monitor joins at upload), and labels of logged rows whose value is
none of the model's classes (UnknownLabels, as the actuals loader counts them in files: a
direct writer bypasses the loader). LabelsJoined counts the labels that were joined, at
arrival time, as the batch monitor counts those found at upload: LabelsStaleAlarm fires
when none came in its window, whether none were written or none matched a prediction.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from botocore.exceptions import ClientError

from modelwatch import clock as processing_clock
from modelwatch.actuals import ACTUAL_ATTRIBUTE, RequestStats, batch_get_items
from modelwatch.config import JoinConfig
from modelwatch.errors import BatchNotSettled, RevisionConflict
from modelwatch.estimation import CALIBRATION_FILE, PerformanceEstimator, estimator_for
from modelwatch.labels import LabelNormaliser
from modelwatch.ledger import (
    BatchLedger,
    BatchState,
    PoolTotals,
    Totals,
    add_to_pool,
    advance_totals,
    batch_state,
    combine_pool,
    negated_pool,
    pool_rows,
    restore_totals,
    update_pool,
)
from modelwatch.metrics import (
    ROW_ADDITIVE_METRICS,
    MetricValue,
    classification_metrics,
    of_row_totals,
    plain_values,
    regression_metrics,
)
from modelwatch.model_bundle import ModelMetadata
from modelwatch.prediction_log import PredictionLog
from modelwatch.publishing import (
    EVENT_TIME_CLOCK,
    LABELS_JOINED_METRIC,
    UNKNOWN_LABELS_METRIC,
    cloudwatch_accepts,
    metric_data,
    publish_metrics,
)
from modelwatch.results import MISSING_OBJECT_CODES, BatchObject, ResultStore
from modelwatch.scoring import withheld_note

logger = logging.getLogger(__name__)

REVISION_ATTEMPTS = 5
MAX_VALUES_PER_DATUM = 150  # PutMetricData's limit on Values per datum
MAX_UNKNOWN_LABEL_EXAMPLES = 5  # named in the log, as the actuals loader does
# Up to this many rows, a join reads the labels of every row of the batch again (about 3
# CPU-seconds of DynamoDB client work in Lambda for 50,000 rows, measured at ~65 µs a row);
# above it, only those of the labels that arrived, so a join's cost follows the labels, not
# the batch: a 2-million-row batch re-read whole would take ~130 s for every 1,000 labels.
FULL_RECHECK_ROWS = 50_000
# How often a join waiting for a batch still being scored reads its ledger item again.
SETTLE_POLL_SECONDS = 5.0
# The time a join needs left to start on a batch (reading and rewriting a large batch's
# predictions file takes ~19 CPU-µs a row: 40 s at 2 million rows); with less, it stops
# and the stream retries the labels, bisected, rather than being cut off mid-way.
MIN_SECONDS_PER_BATCH = 60.0


@dataclass
class BatchJoin:
    """What one batch gained from the labels that came."""

    key: str
    version_id: str
    newly_labeled: int
    corrected: int
    labeled_rows: int
    rows: int
    metrics: dict[str, float]
    delay_seconds: float  # from the batch's event time to the labels' arrival
    event_time: datetime | None
    # Row-additive metric -> (rows, sum, smallest and largest per-row value) to publish.
    published: dict[str, tuple[int, float, float, float]] = field(default_factory=dict)
    # The batch has fewer than MinLabeledRows labeled rows: ``published`` goes to the model's
    # pool (modelwatch.ledger), not on its own to the alarms' series.
    to_pool: bool = False
    item_id: str = ""  # the batch's ledger item
    live: bool = True  # false for a backfill CloudWatch could not take: nothing published late


@dataclass
class JoinResult:
    labels: int  # record ids in the stream records
    logged: int  # of those, rows some batch scored
    batches: list[BatchJoin]
    requests: int  # DynamoDB requests made for the join
    unknown_labels: int = 0  # of the logged ones, labels that match none of the model's classes


@dataclass
class _Unjoined:
    """What one invocation could not join, to be counted: the batches gone from the ledger,
    and the arrived labels of logged rows that match none of the model's classes."""

    expired: list[str] = field(default_factory=list)
    unscored: list[str] = field(default_factory=list)  # rejected batches: nothing to join
    unknown_rows: int = 0
    unknown_examples: dict[str, int] = field(default_factory=dict)  # the first few: label -> rows

    def add_unknown(self, label: Any) -> None:
        self.unknown_rows += 1
        text = str(label)
        if text in self.unknown_examples or len(self.unknown_examples) < MAX_UNKNOWN_LABEL_EXAMPLES:
            self.unknown_examples[text] = self.unknown_examples.get(text, 0) + 1


class LabelJoin:
    def __init__(
        self,
        metadata: ModelMetadata,
        model_name: str,
        namespace: str,
        min_labeled_rows: int,
        log: PredictionLog,
        ledger: BatchLedger,
        dynamodb: Any,
        actuals_table: str,
        store: ResultStore,
        cloudwatch: Any,
        clock: Callable[[], datetime] | None = None,
        estimator: PerformanceEstimator | None = None,
        full_recheck_rows: int = FULL_RECHECK_ROWS,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        quality_metric: str = "ErrorRate",
    ):
        self.metadata = metadata
        self.quality_metric = quality_metric
        self.full_recheck_rows = full_recheck_rows
        self.sleep = sleep
        self.monotonic = monotonic
        self.estimator = estimator
        self.model_name = model_name
        self.namespace = namespace
        self.min_labeled_rows = min_labeled_rows
        self.log = log
        self.ledger = ledger
        self.dynamodb = dynamodb
        self.actuals_table = actuals_table
        self.store = store
        self.cloudwatch = cloudwatch
        self.clock = clock or processing_clock.now  # a replay's virtual clock locally
        self.labels = LabelNormaliser(metadata.classes if metadata.task == "classification" else None)

    @classmethod
    def from_config(cls, config: JoinConfig) -> LabelJoin:
        """The label-join function's warm state: the model's metadata (not the estimator:
        nothing is predicted here), one client per service."""
        from modelwatch.aws import client
        from modelwatch.model_bundle import load_metadata

        metadata = load_metadata(config.model_dir)
        dynamodb = client("dynamodb")
        calibration_path = config.model_dir / CALIBRATION_FILE
        raw = json.loads(calibration_path.read_text(encoding="utf-8")) if calibration_path.is_file() else None
        # Binary models only: the predictions file keeps the positive class's probability,
        # which gives the whole probability matrix of a binary model and not of others.
        estimator, _ = estimator_for(
            metadata.task,
            True,
            metadata.classes,
            metadata.positive_index,
            raw if len(metadata.classes) == 2 else None,
        )
        return cls(
            metadata,
            model_name=config.model_name or metadata.name,
            namespace=config.metrics_namespace,
            min_labeled_rows=config.min_labeled_rows,
            quality_metric=config.quality_metric,
            log=PredictionLog(dynamodb, config.prediction_log_table, retention_days=1),
            ledger=BatchLedger(dynamodb, config.ledger_table),
            dynamodb=dynamodb,
            actuals_table=config.actuals_table,
            store=ResultStore(client("s3")),
            cloudwatch=client("cloudwatch"),
            estimator=estimator,
            full_recheck_rows=FULL_RECHECK_ROWS,
        )

    def join(
        self,
        record_ids: Iterable[str],
        arrived_at: datetime | None = None,
        wait_seconds: float = 0.0,
        time_left: Callable[[], float] | None = None,
    ) -> JoinResult:
        """Join the labels of ``record_ids``, written to the actuals table at ``arrived_at``
        (the stream records' time; the clock when unknown), which stamps what is published.
        ``wait_seconds``: how long to wait for a batch still being scored (see ``_settled``);
        ``time_left``: the invocation's remaining seconds, checked before each batch."""
        deadline = self.monotonic() + wait_seconds
        ids = list(dict.fromkeys(record_ids))
        stats = RequestStats()
        grouped = self.log.batches_of(ids, stats)
        now = arrived_at or self.clock()
        joined: list[BatchJoin] = []
        advanced: list[tuple[BatchState, int, Totals, int]] = []
        unjoined = _Unjoined()
        flushed: PoolTotals = {}
        pool_updated = False
        # Every wait first, before any batch's totals advance: an invocation that timed out
        # holding advanced, unpublished totals would lose what they add (no except runs then).
        settled = {batch_id: self._settled(batch_id, deadline) for batch_id in sorted(grouped)}
        try:
            unmatched = len(ids) - sum(len(rows) for rows in grouped.values())
            for position, (batch_id, state) in enumerate(settled.items()):
                if time_left is not None and time_left() < MIN_SECONDS_PER_BATCH:
                    raise BatchNotSettled(
                        f"{len(settled) - position} batches left to join and {time_left():.0f} s left: "
                        "the stream retries the labels (bisected)"
                    )
                outcome = self._join_batch(
                    batch_id, state, set(grouped[batch_id]), now, stats, advanced, unjoined
                )
                if outcome is not None:
                    joined.append(outcome)
            # A batch that left the ledger cannot be joined: its labels are counted, not dropped.
            unmatched += sum(len(grouped[batch_id]) for batch_id in unjoined.expired + unjoined.unscored)
            flushed = add_to_pool(
                self.ledger,
                self.model_name,
                _summed(batch.published for batch in joined if batch.to_pool),
                pool_rows(_summed(batch.published for batch in joined if not batch.to_pool)),
                self.min_labeled_rows,
            )
            pool_updated = True
            self._publish(joined, flushed, now, unmatched, unjoined.unknown_rows)
        except Exception:
            pooled = {batch.item_id: batch.published for batch in joined if batch.to_pool}
            if pool_updated:
                # The pool first: what it gave goes back, less the pooled additions, which the
                # next join adds again once their batches' totals go back below. If this
                # fails, the totals stay advanced: the additions stay pooled, or are lost with
                # what the pool gave, never counted twice.
                give_back = combine_pool(flushed, negated_pool(_summed(pooled.values())))
                if give_back:
                    update_pool(self.ledger, self.model_name, give_back, math.inf)
            kept = [
                state.item_id
                for state, revision, totals, newly in advanced
                if not self._restored(state, revision, totals, newly)
            ]
            # A batch whose totals could not go back (it left the ledger, or others kept
            # advancing it) keeps them, so no join adds its addition again: back to the pool.
            again = _summed(pooled[item_id] for item_id in kept if item_id in pooled)
            if again:
                update_pool(self.ledger, self.model_name, again, math.inf)
            raise
        if unjoined.unknown_rows:
            examples = unjoined.unknown_examples
            expected = (
                f"match none of the model's classes {list(self.metadata.classes)}"
                if self.metadata.task == "classification"
                else "are not finite numbers (the model is a regressor)"
            )
            logger.warning(
                f"{unjoined.unknown_rows:,} labels written to the actuals table {expected}: {examples} "
                "(label: rows); their rows stay unlabeled",
                extra={"unknown_labels": unjoined.unknown_rows, "unknown_label_examples": examples},
            )
        return JoinResult(
            len(ids),
            sum(len(rows) for rows in grouped.values()),
            joined,
            stats.requests,
            unjoined.unknown_rows,
        )

    # -- one batch --------------------------------------------------------------------------

    def _join_batch(
        self,
        batch_id: str,
        settled: BatchState | None,
        arrived: set[str],
        now: datetime,
        stats: RequestStats,
        advanced: list[tuple[BatchState, int, Totals, int]],
        unjoined: _Unjoined,
    ) -> BatchJoin | None:
        """Join the batch's labels; ``arrived``: its record ids among the invocation's;
        ``settled``: the batch's state once published (``_settled``)."""
        state = settled
        for attempt in range(REVISION_ATTEMPTS):
            if attempt:
                state = batch_state(self.ledger, batch_id)
            if state is None:
                unjoined.expired.append(batch_id)
                return None
            if not state.published:
                # A failed attempt (or one unpublished again since): the run that publishes it
                # reads these labels itself (see ``_settled``).
                unjoined.unscored.append(batch_id)
                return None
            if not state.scored:
                unjoined.unscored.append(batch_id)  # rejected: nothing was scored to join
                return None
            table, pinned = self._predictions(state)
            id_column = self.metadata.id_column
            record_ids = table[id_column].astype(str).tolist()
            before = [self._label(value) for value in table["actual"]]
            # The labels to read again: every row's in a small batch (which also finds a label
            # whose stream record was lost) or when the file is not the pinned version; in a
            # large one only those that arrived, the rest being the file's, which holds every
            # label joined so far (see the module's note).
            whole = not pinned or len(record_ids) <= self.full_recheck_rows
            recheck = record_ids if whole else sorted(arrived)
            raw = batch_get_items(
                self.dynamodb,
                self.actuals_table,
                recheck,
                [ACTUAL_ATTRIBUTE],
                stats=stats,
                consistent=True,
            )
            rechecked = set(recheck)
            after = [
                self._label(raw.get(record_id, {}).get(ACTUAL_ATTRIBUTE)) if record_id in rechecked else old
                for record_id, old in zip(record_ids, before, strict=True)
            ]
            if attempt == 0:
                # A label that is none of the classes leaves its row unlabeled: counted once per
                # write (the arrived ids only), or a renamed label would look like no label at all.
                for record_id in arrived:
                    value = raw.get(record_id, {}).get(ACTUAL_ATTRIBUTE)
                    if not _blank(value) and self._label(value) is None:
                        unjoined.add_unknown(value)
            # Not the pinned file (gone, or never pinned): it may hold fewer labels than the
            # totals count already, so only the labels that arrived now count as new.
            changes = [
                (old, new)
                for record_id, old, new in zip(record_ids, before, after, strict=True)
                if pinned or record_id in arrived
            ]
            newly = sum(old is None and new is not None for old, new in changes)
            corrected = sum(old is not None and new is not None and old != new for old, new in changes)
            quality, probabilities = self._quality(table, after)
            labeled = sum(value is not None for value in after)
            # Enough labeled rows to judge the batch; else ``quality`` is its row-additive
            # metrics only, and what they add goes to the model's pool.
            judged = labeled >= max(1, self.min_labeled_rows)
            totals = self._totals(state, quality)
            delta = {
                name: (
                    rows - state.totals.get(name, (0, 0.0))[0],
                    total - state.totals.get(name, (0, 0.0))[1],
                )
                for name, (rows, total) in totals.items()
                if (rows, total) != state.totals.get(name, (0, 0.0))
            }
            if not newly and not corrected and not delta and not state.unannounced:
                return None  # nothing new for this batch (a redelivery, a label written twice)
            # The file first, then the ledger: the totals advance together with the version
            # of the file that holds their labels, so an invocation that loses the revision
            # race (or dies here) leaves a file version no one reads, never totals without it.
            labeled_table = _with_labels(table, before, after, now)
            version = self.store.write_predictions(state.batch, labeled_table)
            try:
                revision = advance_totals(self.ledger, state, totals, version)
            except RevisionConflict:
                continue  # another invocation joined labels of this batch meanwhile: read again
            # Undone if publishing fails, whatever it added (totals, labels to announce).
            advanced.append((state, revision, totals, newly))
            pooled = [] if judged or not state.live else list(totals)
            self._rewrite_report(
                state.batch,
                labeled_table,
                after,
                quality if judged else {},
                now,
                newly,
                corrected,
                probabilities,
                version,
                pooled,
            )
            event_time = _parse_time(state.event_time)
            return BatchJoin(
                key=state.batch.key,
                version_id=state.batch.version_id,
                # With the labels an earlier join found and could not publish (ledger.restore_totals).
                newly_labeled=newly + state.unannounced,
                corrected=corrected,
                labeled_rows=labeled,
                rows=len(after),
                metrics=plain_values(quality if judged else {}),
                delay_seconds=(now - event_time).total_seconds() if event_time else 0.0,
                event_time=event_time,
                published={
                    name: (rows, total, _row_bound(quality, name, min), _row_bound(quality, name, max))
                    for name, (rows, total) in delta.items()
                    if rows > 0
                }
                if state.live
                else {},
                to_pool=not judged,
                item_id=batch_id,
                live=state.live,
            )
        raise RevisionConflict(batch_id)

    def _restored(self, state: BatchState, revision: int, totals: Totals, newly: int) -> bool:
        """restore_totals, a failure of its own taken as "not restored" (the caller re-pools)."""
        try:
            return restore_totals(self.ledger, state, revision, totals, newly)
        except Exception:
            logger.warning(
                "could not restore a batch's totals", extra={"batch": state.item_id}, exc_info=True
            )
            return False

    def _settled(self, batch_id: str, deadline: float) -> BatchState | None:
        """The batch's state once it is published, or once its attempt is over without
        publishing (None if it is not in the ledger).

        The batch monitor logs a chunk's ids before it reads their actuals, so a label can
        find its row logged while the batch is still being scored: the join waits for it,
        polling the ledger until ``deadline`` (time.monotonic()), then raises BatchNotSettled
        (the stream retries the labels). An attempt that failed or outlived any invocation
        is not waited for: whatever scores the batch again (Lambda's retry, the file
        uploaded again) reads every row's actuals, these labels included."""
        state = batch_state(self.ledger, batch_id)
        while state is not None and not state.published and not state.failed:
            left = deadline - self.monotonic()
            if left <= 0:
                raise BatchNotSettled(f"batch {batch_id} is still being scored; retrying its labels")
            self.sleep(min(SETTLE_POLL_SECONDS, left))
            state = batch_state(self.ledger, batch_id)
        if state is not None and not state.published:
            logger.warning(
                "labels of a batch whose scoring failed or timed out: left to the run that scores it again",
                extra={"batch": batch_id, "key": state.batch.key},
            )
        return state

    def _predictions(self, state: BatchState) -> tuple[pd.DataFrame, bool]:
        """The batch's predictions file, and whether it is the version the ledger pins. The
        newest instead when there is no pin (a bucket without versioning, a batch published
        before pins) or the pinned version is gone (the bucket's lifecycle expires noncurrent
        versions; a join that wrote and then lost its revision race leaves a newer one)."""
        if state.predictions_version:
            try:
                return self.store.read_predictions(state.batch, state.predictions_version), True
            except ClientError as problem:
                if problem.response.get("Error", {}).get("Code", "") not in MISSING_OBJECT_CODES:
                    raise
                logger.warning(
                    "the pinned predictions version is gone; reading the newest and every row's label",
                    extra={"key": state.batch.key, "version": state.predictions_version},
                )
        return self.store.read_predictions(state.batch), False

    def _label(self, value: Any) -> Any:
        if _blank(value):
            return None
        return self.labels.normalise(value)

    def _quality(
        self, table: pd.DataFrame, actuals: list[Any]
    ) -> tuple[dict[str, MetricValue], np.ndarray | None]:
        """The batch's quality metrics over its labeled rows (below MinLabeledRows, the
        row-additive ones only, for the model's pool; none without labels), and every row's
        class probabilities when the predictions file gives them (binary models)."""
        labeled = np.array([value is not None for value in actuals], dtype=bool)
        probabilities = None
        positive = self.metadata.positive_index
        if "probability" in table.columns and len(self.metadata.classes) == 2 and positive is not None:
            # The predictions file keeps the positive class's probability; a binary model's
            # other column is its complement.
            p = table["probability"].to_numpy(dtype=float)
            probabilities = np.column_stack([1 - p, p] if positive == 1 else [p, 1 - p])
        if not labeled.any():
            return {}, probabilities
        judged = labeled.sum() >= self.min_labeled_rows
        y_true = np.array([value for value in actuals if value is not None], dtype=object)
        predicted = table["prediction"][labeled]
        if self.metadata.task == "regression":
            quality = regression_metrics(y_true.astype(float), predicted.to_numpy(dtype=float))
            return (quality if judged else _row_additive(quality)), None
        y_pred = np.array([self.labels.normalise(value) for value in predicted], dtype=object)
        quality = classification_metrics(
            y_true,
            y_pred,
            # Without probabilities below MinLabeledRows: the row-additive metrics need none.
            probabilities[labeled] if probabilities is not None and judged else None,
            self.metadata.classes,
            self.metadata.positive_class,
        )
        return (quality if judged else _row_additive(quality)), probabilities

    def _totals(self, state: BatchState, quality: dict[str, MetricValue]) -> Totals:
        """The row-additive totals to have published for the batch now. A metric whose row
        count did not grow keeps its published totals (see the module's note on corrections)."""
        totals = dict(state.totals)
        for name in ROW_ADDITIVE_METRICS:
            value = quality.get(name)
            if value is None or value.rows is None or value.row_sum is None:
                continue
            published_rows = state.totals.get(name, (0, 0.0))[0]
            if value.rows > published_rows:
                totals[name] = (value.rows, value.row_sum)
        return totals

    def _rewrite_report(
        self,
        batch: BatchObject,
        table: pd.DataFrame,
        after: list[Any],
        quality: dict[str, MetricValue],
        now: datetime,
        newly: int,
        corrected: int,
        probabilities: np.ndarray | None,
        predictions_version: str,
        pooled: list[str],
    ) -> None:
        """report.json: the metrics as of now, and the estimate beside the realized values
        on the rows labeled so far. ``table``: the predictions file as rewritten; ``quality``
        empty below MinLabeledRows, where ``pooled`` names the metrics that went to the pool."""
        stamp = now.isoformat()
        report = self.store.read_report(batch)
        if report is None:
            return
        labeled = sum(value is not None for value in after)
        rows = len(after)
        estimates = {
            name: value
            for name, value in (report.get("metrics") or {}).items()
            if name.startswith("Estimated")
        }
        report["labeled_rows"] = labeled
        report["label_coverage"] = labeled / rows if rows else 0.0
        report["predictions_version_id"] = predictions_version
        if quality:
            report["metrics"] = {**estimates, **plain_values(quality)}
            report["quality_metrics_withheld"] = None
            if self.estimator is not None and probabilities is not None:
                labeled_mask = np.array([value is not None for value in after], dtype=bool)
                predicted = np.array(
                    [self.labels.normalise(value) for value in table["prediction"]], dtype=object
                )
                estimate = self.estimator.estimate(probabilities, predicted, labeled_mask, quality)
                report["estimated_performance"] = estimate.report
        elif pooled:
            report["quality_metrics_withheld"] = withheld_note(labeled, self.min_labeled_rows, pooled)
        event_time = _parse_time(str(report.get("event_time", "")))
        delays = [
            _seconds_between(event_time, str(at)) if isinstance(at, str) else 0.0
            for at, value in zip(table["labeled_at"], after, strict=True)
            if value is not None
        ]
        labels = dict(report.get("labels") or {})
        arrivals = list(labels.get("arrivals") or [])
        if newly or corrected:
            arrivals.append({"at": stamp, "new": newly, "corrected": corrected})
        report["labels"] = {
            "arrivals": arrivals,
            "awaiting_rows": rows - labeled,
            "median_delay_seconds": float(np.median(delays)) if delays else None,
            "metrics_as_of": stamp,
        }
        self.store.write_report(batch, report)

    def _publish(
        self, joined: list[BatchJoin], flushed: PoolTotals, now: datetime, unmatched: int, unknown: int = 0
    ) -> None:
        """One datapoint per metric for the whole invocation, stamped with the arrival time:
        the judged batches' additions and what the pool gave (``flushed``).
        ``unmatched``: labels with no logged prediction (never scored, or gone from the log
        after PredictionLogDays), counted so that none is dropped unseen; ``unknown``: labels
        of logged rows that match none of the model's classes."""
        sums = combine_pool(_summed(batch.published for batch in joined if not batch.to_pool), flushed)
        metrics = {name: of_row_totals(value) for name, value in sums.items()}
        arrived = [batch for batch in joined if batch.newly_labeled]
        if arrived:
            newly = float(sum(batch.newly_labeled for batch in arrived))
            metrics["LabelsArrived"] = MetricValue(newly)
            # The same count in the metric the batch monitor adds its labels at upload to, for
            # LabelsStaleAlarm (LabelsArrived stays "labeled later" for the dashboard's arithmetic).
            metrics[LABELS_JOINED_METRIC] = MetricValue(newly)
        if unmatched:
            metrics["LabelsWithoutPrediction"] = MetricValue(float(unmatched))
        if unknown:
            metrics[UNKNOWN_LABELS_METRIC] = MetricValue(float(unknown))
        # What must count once goes first, in one request (a dozen datapoints at most): if it
        # fails, the join is undone and retried whole. What follows (the dashboard's series,
        # one datapoint per batch, possibly past PutMetricData's 1,000 a request) cannot be
        # undone once a part of it is in, so its failure is logged, not retried.
        must_count = metric_data(metrics, self.model_name, now) + self._batch_quality(joined, now)
        if must_count:
            publish_metrics(self.cloudwatch, self.namespace, must_count)
        data = self._by_event_time(joined, now)
        # The delay as values with counts (one value per batch, counted once per label), so
        # CloudWatch can give its percentiles: the dashboard shows the median.
        for start in range(0, len(arrived), MAX_VALUES_PER_DATUM):
            part = arrived[start : start + MAX_VALUES_PER_DATUM]
            data.append(
                {
                    "MetricName": "LabelDelaySeconds",
                    "Dimensions": [{"Name": "ModelName", "Value": self.model_name}],
                    "Timestamp": now,
                    "Unit": "Seconds",
                    "Values": [batch.delay_seconds for batch in part],
                    "Counts": [float(batch.newly_labeled) for batch in part],
                }
            )
        if data:
            try:
                publish_metrics(self.cloudwatch, self.namespace, data)
            except Exception:
                logger.warning(
                    "the by-event-time and label-delay datapoints could not be published; "
                    "the alarms' datapoints were",
                    exc_info=True,
                )

    def _batch_quality(self, joined: list[BatchJoin], now: datetime) -> list[dict[str, Any]]:
        """A non-additive QualityMetric: each judged batch's value over all its labels so far,
        one value per batch (CloudWatch's Average over a period is then the batches' mean, as
        at upload). A row-additive one is in the sums already."""
        if self.quality_metric in ROW_ADDITIVE_METRICS:
            return []
        values = [
            batch.metrics[self.quality_metric]
            for batch in joined
            if batch.live and not batch.to_pool and batch.metrics.get(self.quality_metric) is not None
        ]
        return [
            {
                "MetricName": self.quality_metric,
                "Dimensions": [{"Name": "ModelName", "Value": self.model_name}],
                "Timestamp": now,
                "Values": values[start : start + MAX_VALUES_PER_DATUM],
                "Counts": [1.0] * len(values[start : start + MAX_VALUES_PER_DATUM]),
            }
            for start in range(0, len(values), MAX_VALUES_PER_DATUM)
        ]

    def _by_event_time(self, joined: list[BatchJoin], now: datetime) -> list[dict[str, Any]]:
        """The same additions at each batch's event time, in the by-event-time series the
        dashboard graphs (no alarm watches it, so a pooled batch's go there too, each on its
        own); a batch older than CloudWatch takes is counted instead."""
        data: list[dict[str, Any]] = []
        outside = 0
        for batch in joined:
            if not batch.published:
                continue
            if batch.event_time is None or not cloudwatch_accepts(batch.event_time, now):
                outside += max(rows for rows, _, _, _ in batch.published.values())
                continue
            values = {
                name: MetricValue(total / rows, row_sum=total, rows=rows, row_min=smallest, row_max=largest)
                for name, (rows, total, smallest, largest) in batch.published.items()
            }
            data += metric_data(values, self.model_name, batch.event_time, clock=EVENT_TIME_CLOCK)
        if outside:
            data += metric_data(
                {"LabelsOutsideEventTimeWindow": MetricValue(float(outside))}, self.model_name, now
            )
        return data


def _with_labels(table: pd.DataFrame, before: list[Any], after: list[Any], now: datetime) -> pd.DataFrame:
    """The predictions file with its labels as of now: ``actual`` from ``after``, and
    ``labeled_at`` stamped ``now`` where a label came or changed."""
    stamp = now.isoformat()
    labeled_at = table["labeled_at"] if "labeled_at" in table.columns else pd.Series([None] * len(table))
    table = table.copy()
    table["actual"] = pd.Series(after, dtype=object)
    table["labeled_at"] = [
        stamp if old != new and new is not None else (None if pd.isna(previous) else previous)
        for old, new, previous in zip(before, after, labeled_at, strict=True)
    ]
    return table


def _summed(additions: Iterable[PoolTotals]) -> PoolTotals:
    """Batches' additions, one total per metric."""
    summed: PoolTotals = {}
    for addition in additions:
        summed = combine_pool(summed, addition)
    return summed


def _row_additive(quality: dict[str, MetricValue]) -> dict[str, MetricValue]:
    return {name: value for name, value in quality.items() if name in ROW_ADDITIVE_METRICS}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds_between(start: datetime | None, end: str) -> float:
    finish = _parse_time(end)
    return (finish - start).total_seconds() if start and finish else 0.0


def _row_bound(quality: dict[str, MetricValue], name: str, pick: Callable[..., float]) -> float:
    value = quality[name]
    bound = value.row_min if pick is min else value.row_max
    return float(bound if bound is not None else value.value)
