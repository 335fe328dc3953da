"""Retraining: a challenger fitted on recent labeled rows, compared with the champion.

Order of work for one retrain (``Retrainer.retrain``), side effects last:

1. gather the labeled window: the batch ledger lists the batches that published; those
   whose event time lies in the last ``window_days`` are copied from S3 to /tmp at the
   version that was scored, read a chunk of rows at a time, validated as the batch
   monitor validates them, and joined with the actuals table. Rows without a label are
   dropped as each chunk is read; each row keeps its batch's event time;
2. refuse below ``min_labeled_rows`` (the decision says how many there were);
3. hold out the newest slice: the newest batches holding at least HOLDOUT_FRACTION of
   the labeled rows since the degradation began (all of them when that is unknown), and
   at least MIN_HOLDOUT_ROWS. A batch is never split between training and holdout, so
   the holdout is "what came after the training rows";
4. candidate training windows: the whole window, and the rows since the degradation
   started (the alarm's oldest breaching period; on demand ``since``, else the newest
   half of the training rows). When the input-target relation changed, older rows teach
   the old relation, so the shorter window can win; the holdout decides;
5. for each window a challenger: ``sklearn.base.clone`` of the champion's estimator
   (the user's own pipeline, unfitted), fitted on the window's rows;
6. champion and the best challenger scored on the same holdout rows with the quality
   metric (its direction from QualityComparison: an alarm on "greater than" means lower
   is better) and the full metric set; a candidate only if it beats the champion by
   ``min_improvement`` in the metric's units;
7. a candidate's model directory is written under ``models/<version>/`` (model file in
   the champion's format, metadata.json, baseline.json rebuilt from its training window,
   comparison.json); every decision, refusals included, under ``models/decisions/``;
   then the decision is announced on the alert topic (email and Slack).

A candidate awaits a person's approval (`modelwatch model promote`; the announcement gives
the command), unless AutoPromote is on: then it is promoted in the same run
(modelwatch.promotion) and the decision says so.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from modelwatch import drift
from modelwatch.actuals import fetch_actuals
from modelwatch.alerts.alarm_message import ALARM, AlarmNotification
from modelwatch.alerts.announcement import announcement_subject, retrain_announcement
from modelwatch.batch_files import CHUNK_ROWS, read_batch_chunks
from modelwatch.calibration import fit_calibration
from modelwatch.config import MODELS_PREFIX, RetrainConfig
from modelwatch.errors import BatchRejected, NotAnAlarmError, RetrainRefused
from modelwatch.estimation import CALIBRATION_FILE
from modelwatch.labels import LabelNormaliser
from modelwatch.metrics import classification_metrics, plain_values, regression_metrics
from modelwatch.model_bundle import ModelBundle, ModelMetadata, library_versions
from modelwatch.monitor import new_workspace
from modelwatch.promotion import Promoter, PromotionError
from modelwatch.results import BatchObject, ResultStore
from modelwatch.validation import BatchChecker

logger = logging.getLogger(__name__)

# The holdout: the newest fifth of the degraded rows, whole batches, at least 200 rows
# (below that an ErrorRate of 0.2 has a standard error of 0.028, more than the default
# RetrainMinImprovement of 0.01 three times over).
HOLDOUT_FRACTION = 0.2
MIN_HOLDOUT_ROWS = 200
# A training window with fewer rows is not fitted: the challenger would be noise.
MIN_TRAINING_ROWS = 200

CANDIDATE = "candidate"  # better by min_improvement: awaits approval
NOT_BETTER = "not_better"
REFUSED = "refused"
# Not better only because the change is all in the holdout: retried once more labels have
# arrived (modelwatch.retrain_deferral).
DEFERRED = "deferred"

WHOLE_WINDOW = "whole window"
SINCE_DEGRADATION = "since degradation"


# -- what starts a retrain --------------------------------------------------------------------


def retrain_trigger(
    message: str, alarm_names: tuple[str, ...], fallback_region: str | None = None
) -> tuple[AlarmNotification | None, str]:
    """The alarm notification that starts a retrain, or None and why not.

    Only an ALARM state of an alarm named in RetrainOnAlarm: OK and INSUFFICIENT_DATA say
    nothing got worse, and other messages on the topic (the announcements of retraining
    itself among them) are no alarms at all.
    """
    try:
        alarm = AlarmNotification.from_sns_message(message, fallback_region=fallback_region)
    except NotAnAlarmError as error:
        return None, f"not an alarm state change ({error})"
    if alarm.name not in alarm_names:
        return None, f"alarm {alarm.name!r} is not one RetrainOnAlarm names"
    if alarm.new_state != ALARM:
        return None, f"alarm {alarm.name!r} entered {alarm.new_state}, not ALARM"
    return alarm, ""


_REASON_DATAPOINT = re.compile(r"\((\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})\)")


def degradation_start(alarm: AlarmNotification) -> datetime:
    """When the degradation began: the start of the oldest breaching period the alarm's
    reason lists ("... [0.8 (01/12/26 04:00:00), 0.85 (01/12/26 03:00:00)] were ...");
    without readable datapoints, DatapointsToAlarm periods before the state change."""
    stamps = [
        datetime.strptime(text, "%d/%m/%y %H:%M:%S").replace(tzinfo=UTC)
        for text in _REASON_DATAPOINT.findall(alarm.reason)
    ]
    if stamps:
        return min(stamps)
    period = alarm.metric.period_seconds if alarm.metric else 3600
    periods = alarm.datapoints_to_alarm or alarm.evaluation_periods or 1
    return alarm.state_change_time - timedelta(seconds=period * periods)


# -- the labeled window -----------------------------------------------------------------------


@dataclass(frozen=True)
class WindowBatch:
    key: str
    version_id: str
    event_time: datetime
    rows: int
    labeled_rows: int


@dataclass
class LabeledWindow:
    start: datetime
    end: datetime
    features: pd.DataFrame  # feature columns in metadata order, one row per labeled row
    target: np.ndarray  # labels normalised to the model's classes (floats for regression)
    event_times: np.ndarray  # each row's batch event time, datetime64[ns] UTC-naive
    batches: list[WindowBatch] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # batches that could not be read

    @property
    def rows(self) -> int:
        return len(self.target)


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _naive_utc(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "ns")


def published_batches(dynamodb: Any, ledger_table: str) -> list[tuple[BatchObject, datetime]]:
    """Every batch the ledger says published, with its event time (one item per batch: small)."""
    found = []
    paginator = dynamodb.get_paginator("scan")
    pages = paginator.paginate(
        TableName=ledger_table,
        ProjectionExpression="s3_bucket, s3_key, version_id, batch_event_time",
        FilterExpression="attribute_exists(s3_bucket)",
    )
    for page in pages:
        for item in page.get("Items", []):
            moment = _parse_time(item.get("batch_event_time", {}).get("S", ""))
            if moment is None:
                continue
            batch = BatchObject(
                item["s3_bucket"]["S"], item["s3_key"]["S"], version_id=item["version_id"]["S"]
            )
            found.append((batch, moment))
    return sorted(found, key=lambda pair: (pair[1], pair[0].key))


@dataclass
class _LabeledRows:
    """One batch's part of the window."""

    valid_rows: int = 0
    features: list[pd.DataFrame] = field(default_factory=list)  # the labeled rows' features, by chunk
    target: list[Any] = field(default_factory=list)  # their labels, normalised

    @property
    def labeled_rows(self) -> int:
        return len(self.target)


def gather_labeled_window(
    *,
    s3: Any,
    dynamodb: Any,
    config: RetrainConfig,
    metadata: ModelMetadata,
    now: datetime,
    chunk_rows: int = CHUNK_ROWS,
) -> LabeledWindow:
    """The labeled rows of the window's batches. Each batch is spooled to /tmp and read
    ``chunk_rows`` rows at a time, keeping only the labeled rows' features: memory follows
    the labeled rows the fit needs, not the batches' bytes (a batch at MaxBatchMegabytes
    was held whole, and its frame, when it was read from memory)."""
    start = now - timedelta(days=config.window_days)
    store = ResultStore(s3)
    labels = LabelNormaliser(metadata.classes if metadata.task == "classification" else None)
    frames: list[pd.DataFrame] = []
    targets: list[Any] = []
    times: list[np.datetime64] = []
    window = LabeledWindow(start, now, pd.DataFrame(), np.array([]), np.array([], dtype="datetime64[ns]"))
    for batch, event_time in published_batches(dynamodb, config.ledger_table):
        if not start <= event_time <= now:
            continue
        try:
            # One batch on /tmp at a time, removed once read (see modelwatch.monitor.new_workspace).
            with new_workspace() as workspace:
                spooled = store.spool_batch(batch, config.max_batch_bytes, Path(workspace) / "batch")
                rows = _labeled_rows(spooled.path, batch.key, dynamodb, config, metadata, labels, chunk_rows)
        except BatchRejected as rejection:
            # Codes only: the reason may quote cell values, and decisions are read widely.
            window.skipped.append(
                {"key": batch.key, "version_id": batch.version_id, "reason": rejection.log_safe}
            )
            continue
        window.batches.append(
            WindowBatch(batch.key, batch.version_id, event_time, rows.valid_rows, rows.labeled_rows)
        )
        frames.extend(rows.features)
        targets.extend(rows.target)
        times.extend([_naive_utc(event_time)] * rows.labeled_rows)
    if frames:
        window.features = pd.concat(frames, ignore_index=True)
        window.target = (
            np.asarray(targets) if metadata.task == "classification" else np.asarray(targets, float)
        )
        window.event_times = np.asarray(times, dtype="datetime64[ns]")
    return window


def _labeled_rows(
    path: Path,
    key: str,
    dynamodb: Any,
    config: RetrainConfig,
    metadata: ModelMetadata,
    labels: LabelNormaliser,
    chunk_rows: int,
) -> _LabeledRows:
    """The batch file's valid rows that have a label, validated as the batch monitor
    validates them (modelwatch.monitor's chunked read): row numbers and repeated ids across
    chunks, the missing columns and the share of invalid rows of the whole batch, which
    rejects it only after its last chunk."""
    found = _LabeledRows()
    # The ids' hashes of a large batch go to disk beside the batch (its workspace, removed after).
    checker = BatchChecker(metadata, key, path.parent)
    for chunk in read_batch_chunks(path, key, config.max_batch_bytes, chunk_rows):
        checked, _ = checker.check(chunk.frame, chunk.first_row)
        del chunk
        if checked.ids.empty:
            continue
        ids = checked.ids.tolist()
        actuals = fetch_actuals(dynamodb, config.actuals_table, ids)
        normalised = [labels.normalise(actuals.get(record_id)) for record_id in ids]
        labeled = np.array([value is not None for value in normalised], dtype=bool)
        if labeled.any():
            found.features.append(checked.features.loc[labeled].reset_index(drop=True))
            found.target.extend(value for value, keep in zip(normalised, labeled, strict=True) if keep)
    checker.finish(config.max_invalid_row_percent)
    found.valid_rows = checker.totals.valid
    return found


def holdout_mask(event_times: np.ndarray, since: datetime | None = None) -> np.ndarray:
    """The newest rows by event time: at least HOLDOUT_FRACTION of the rows since the
    degradation began (of all rows when that is unknown) and at least MIN_HOLDOUT_ROWS,
    rounded up to whole batches (every row of the boundary's event time is held out).

    Sized on the degraded rows because when the alarm fires they are few (two periods' worth
    at the template's defaults): a fifth of the whole window would hold all of them out, and
    no challenger could learn the relation the holdout tests."""
    base = len(event_times)
    if since is not None:
        base = int((event_times >= _naive_utc(since)).sum()) or base
    wanted = min(len(event_times), max(math.ceil(HOLDOUT_FRACTION * base), MIN_HOLDOUT_ROWS))
    if wanted == 0:
        return np.zeros(0, dtype=bool)
    boundary = np.sort(event_times)[::-1][wanted - 1]
    return event_times >= boundary


# -- fitting and scoring ----------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingWindow:
    name: str
    start: datetime
    rows: int = 0
    quality: float | None = None  # the challenger's quality metric on the holdout
    skipped: str = ""  # why no challenger was fitted on it

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "start": self.start.isoformat(),
            "rows": self.rows,
            "quality": self.quality,
            "skipped": self.skipped or None,
        }


def higher_is_better(quality_comparison: str) -> bool:
    """QualityAlarm alarms on the bad side: LessThan... watches a score (Accuracy, ROCAUC)."""
    return quality_comparison.startswith("LessThan")


def score(
    estimator: Any, metadata: ModelMetadata, features: pd.DataFrame, target: np.ndarray
) -> dict[str, float]:
    """The full metric set, exactly as the batch monitor computes it."""
    predictions = np.asarray(estimator.predict(features))
    if metadata.task == "regression":
        return plain_values(regression_metrics(target, predictions))
    probabilities = (
        np.asarray(estimator.predict_proba(features), dtype=float)
        if hasattr(estimator, "predict_proba")
        else None
    )
    return plain_values(
        classification_metrics(
            target, predictions, probabilities, list(metadata.classes), metadata.positive_class
        )
    )


def fit_challenger(champion: Any, features: pd.DataFrame, target: np.ndarray) -> Any:
    from sklearn.base import clone

    return clone(champion).fit(features, target)


# -- the decision -----------------------------------------------------------------------------


@dataclass
class RetrainDecision:
    decision: str  # CANDIDATE, NOT_BETTER, DEFERRED or REFUSED
    reason: str
    model_name: str
    champion_version: str
    decided_at: datetime
    trigger: dict[str, Any]
    quality_metric: str
    higher_is_better: bool
    min_improvement: float
    window: dict[str, Any] = field(default_factory=dict)
    holdout: dict[str, Any] = field(default_factory=dict)
    windows: list[TrainingWindow] = field(default_factory=list)
    winning_window: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    improvement: float | None = None
    challenger_version: str | None = None
    candidate_uri: str | None = None
    record_uri: str | None = None
    # skops types the candidate's file holds that nobody vetted when the champion was packaged
    new_trusted_types: list[str] = field(default_factory=list)
    promotion: dict[str, Any] | None = None  # the promotion record, when AutoPromote promoted it
    promotion_error: str = ""  # why AutoPromote could not promote it
    promote_command: str = ""  # what a person runs to approve the candidate

    @property
    def champion_quality(self) -> float | None:
        return self.champion_metrics.get(self.quality_metric)

    @property
    def challenger_quality(self) -> float | None:
        return self.challenger_metrics.get(self.quality_metric)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "status": "promoted"
            if self.promotion
            else {
                CANDIDATE: "awaiting approval",
                NOT_BETTER: "not better",
                REFUSED: "refused",
                DEFERRED: "deferred",
            }[self.decision],
            "reason": self.reason,
            "model_name": self.model_name,
            "champion_version": self.champion_version,
            "challenger_version": self.challenger_version,
            "decided_at": self.decided_at.isoformat(),
            "trigger": self.trigger,
            "quality_metric": self.quality_metric,
            "direction": "higher is better" if self.higher_is_better else "lower is better",
            "min_improvement": self.min_improvement,
            "improvement": self.improvement,
            "champion_quality": self.champion_quality,
            "challenger_quality": self.challenger_quality,
            "window": self.window,
            "holdout": self.holdout,
            "windows": [window.as_dict() for window in self.windows],
            "winning_window": self.winning_window,
            "champion_metrics": self.champion_metrics,
            "challenger_metrics": self.challenger_metrics,
            "candidate_uri": self.candidate_uri,
            "record_uri": self.record_uri,
            "new_trusted_types": self.new_trusted_types,
            "promotion": self.promotion,
            "promotion_error": self.promotion_error or None,
            "promote_command": self.promote_command or None,
        }


def _version_now(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


class Retrainer:
    """Runs one retrain with the settings, clients and champion it was built with.

    ``clock`` gives the decision time (tests and replays put it where their batches are).
    """

    def __init__(
        self,
        config: RetrainConfig,
        bundle: ModelBundle,
        *,
        s3: Any,
        dynamodb: Any,
        sns: Any,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        promoter: Promoter | None = None,
    ) -> None:
        """``promoter``: promotes a candidate at once (AutoPromote); without, it awaits approval."""
        self.config = config
        self.bundle = bundle
        self.s3 = s3
        self.dynamodb = dynamodb
        self.sns = sns
        self.clock = clock
        self.promoter = promoter

    def retrain(
        self,
        alarm: AlarmNotification | None = None,
        since: datetime | None = None,
        *,
        may_defer: bool = False,
        attempt: int = 0,
        before_record: Callable[[RetrainDecision], None] | None = None,
    ) -> RetrainDecision:
        """Retrain after ``alarm`` (its degradation start is a candidate window's) or on
        demand (``since``, when given, starts that window), record and announce the decision.

        ``may_defer``: when the change since the degradation began is all in the holdout, the
        decision is DEFERRED (the caller keeps the alarm for a later retry, ``attempt`` being
        its number) instead of NOT_BETTER. ``before_record`` runs once the decision is made,
        before it is recorded and announced: what it raises leaves no record behind."""
        now = self.clock()
        metadata = self.bundle.metadata
        trigger: dict[str, Any] = {"kind": "on demand"}
        if alarm is not None:
            trigger = {
                "kind": "alarm",
                "alarm": alarm.name,
                "state_change_time": alarm.state_change_time.isoformat(),
                "degradation_start": degradation_start(alarm).isoformat(),
            }
            if attempt:
                trigger["deferred_attempt"] = attempt
            since = degradation_start(alarm)
        elif since is not None:
            trigger["since"] = since.isoformat()
        decision = RetrainDecision(
            decision=REFUSED,
            reason="",
            model_name=metadata.name,
            champion_version=metadata.version,
            decided_at=now,
            trigger=trigger,
            quality_metric=self.config.quality_metric,
            higher_is_better=higher_is_better(self.config.quality_comparison),
            min_improvement=self.config.min_improvement,
        )
        try:
            self._compare(decision, since, now, may_defer=may_defer)
        except RetrainRefused as refusal:
            decision.decision, decision.reason = REFUSED, refusal.reason
        if decision.decision == CANDIDATE:
            self._promote(decision, alarm)
        if before_record is not None:
            before_record(decision)
        self._record(decision)
        self._announce(decision)
        logger.info("retrain decided", extra={"decision": decision.decision, "reason": decision.reason})
        return decision

    def _compare(
        self, decision: RetrainDecision, since: datetime | None, now: datetime, *, may_defer: bool = False
    ) -> None:
        config, metadata = self.config, self.bundle.metadata
        window = gather_labeled_window(
            s3=self.s3, dynamodb=self.dynamodb, config=config, metadata=metadata, now=now
        )
        decision.window = {
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "days": config.window_days,
            "batches": len(window.batches),
            "labeled_rows": window.rows,
            "skipped_batches": window.skipped,
        }
        if window.rows < config.min_labeled_rows:
            raise RetrainRefused(
                f"only {window.rows} labeled rows in the last {config.window_days} days "
                f"({len(window.batches)} batches), below RetrainMinLabeledRows ({config.min_labeled_rows}): "
                "wait for more labels, or lower RetrainMinLabeledRows"
            )
        held_out = holdout_mask(window.event_times, since)
        training = ~held_out
        holdout_times = window.event_times[held_out]
        decision.holdout = {
            "rows": int(held_out.sum()),
            "from": str(holdout_times.min()) + "Z",
            "to": str(holdout_times.max()) + "Z",
            "batches": len({time for time in holdout_times.tolist()}),
        }
        if training.sum() < MIN_TRAINING_ROWS:
            raise RetrainRefused(
                f"the newest batches hold {int(held_out.sum())} of the {window.rows} labeled rows, "
                f"which leaves {int(training.sum())} to train on (at least {MIN_TRAINING_ROWS} needed): "
                "the window has too few batches"
            )
        holdout_features = window.features.loc[held_out].reset_index(drop=True)
        holdout_target = window.target[held_out]
        champion_metrics = score(self.bundle.estimator, metadata, holdout_features, holdout_target)
        decision.champion_metrics = champion_metrics
        metric = config.quality_metric
        if metric not in champion_metrics:
            raise RetrainRefused(
                f"{metric} cannot be computed on the {int(held_out.sum())} holdout rows "
                f"(computed: {sorted(champion_metrics)}); ROCAUC needs both classes among them"
            )

        train_times = window.event_times[training]
        starts = [(WHOLE_WINDOW, window.start)]
        degraded_from = since if since is not None else _newest_half_start(train_times)
        if degraded_from is not None:
            starts.append((SINCE_DEGRADATION, degraded_from))
        best: tuple[float, Any, TrainingWindow, np.ndarray] | None = None
        sign = 1.0 if decision.higher_is_better else -1.0
        for name, start in starts:
            rows = training & (window.event_times >= _naive_utc(start))
            count = int(rows.sum())
            if name != WHOLE_WINDOW and count == int(training.sum()):
                decision.windows.append(
                    TrainingWindow(name, start, count, skipped="the same rows as the whole window")
                )
                continue
            if count < MIN_TRAINING_ROWS:
                decision.windows.append(
                    TrainingWindow(
                        name, start, count, skipped=f"{count} training rows, fewer than {MIN_TRAINING_ROWS}"
                    )
                )
                continue
            features = window.features.loc[rows].reset_index(drop=True)
            target = window.target[rows]
            if metadata.task == "classification" and set(np.unique(target).tolist()) != set(metadata.classes):
                decision.windows.append(
                    TrainingWindow(
                        name, start, count, skipped="not every class of the model is among its labels"
                    )
                )
                continue
            try:
                challenger = fit_challenger(self.bundle.estimator, features, target)
                quality = score(challenger, metadata, holdout_features, holdout_target).get(metric)
            except Exception as problem:  # noqa: BLE001 - the estimator is user code: the decision says what it raised
                decision.windows.append(
                    TrainingWindow(
                        name, start, count, skipped=f"fitting failed: {type(problem).__name__}: {problem}"
                    )
                )
                continue
            trained = TrainingWindow(name, start, count, quality=quality)
            decision.windows.append(trained)
            if quality is not None and (best is None or sign * quality > sign * best[0]):
                best = (quality, challenger, trained, rows)
        if best is None:
            raise RetrainRefused(
                "no training window could be fitted: "
                + "; ".join(f"{w.name}: {w.skipped}" for w in decision.windows)
            )
        _, challenger, winner, rows = best
        decision.winning_window = winner.name
        decision.challenger_metrics = score(challenger, metadata, holdout_features, holdout_target)
        improvement = sign * (decision.challenger_metrics[metric] - champion_metrics[metric])
        decision.improvement = improvement
        direction = "higher" if decision.higher_is_better else "lower"
        if improvement < config.min_improvement:
            decision.decision = NOT_BETTER
            decision.reason = (
                f"the challenger ({winner.name}) scores {metric} {decision.challenger_metrics[metric]:.4f} "
                f"against the champion's {champion_metrics[metric]:.4f} on the holdout ({direction} is "
                f"better): an improvement of {improvement:.4f}, less than RetrainMinImprovement "
                f"({config.min_improvement})"
            )
            unlearned = [
                w for w in decision.windows if w.name == SINCE_DEGRADATION and w.rows < MIN_TRAINING_ROWS
            ]
            if since is not None and unlearned and may_defer:
                # The alarm fired on the first changed period (DatapointsToAlarm 1): its rows are
                # the holdout, and nothing changed is left to learn from yet.
                decision.decision = DEFERRED
                decision.reason += (
                    f". The change since {since.isoformat()} is in the held-out batches only, so no "
                    "challenger could learn it yet: the retrain runs again by itself once more labeled "
                    "batches have arrived, while the alarm stays in ALARM (checked hourly)"
                )
            elif since is not None and unlearned:
                decision.reason += (
                    f". The change since {since.isoformat()} is in the held-out batches only, so no "
                    "challenger could learn it yet: retrain again once more labeled batches have "
                    "arrived (`modelwatch model retrain`), or set DatapointsToAlarm to 2 so that the "
                    "alarm starting retrains waits for a second changed period"
                )
            return
        decision.decision = CANDIDATE
        decision.challenger_version = _version_now(now)
        decision.reason = (
            f"the challenger ({winner.name}) beats the champion by {improvement:.4f} {metric} on the holdout "
            f"({direction} is better; RetrainMinImprovement {config.min_improvement})"
        )
        decision.candidate_uri = self._write_candidate(
            decision,
            challenger,
            window.features.loc[rows].reset_index(drop=True),
            window.target[rows],
            (holdout_features, holdout_target),
        )

    # -- side effects ---------------------------------------------------------------------------

    def _promote(self, decision: RetrainDecision, alarm: AlarmNotification | None) -> None:
        """AutoPromote: the candidate serves from now on. A failed promotion leaves the
        candidate awaiting approval, and the decision says why."""
        assert decision.challenger_version is not None
        decision.promote_command = self.config.promote_command(decision.challenger_version)
        if self.promoter is None:
            return
        if decision.new_trusted_types:
            # Nobody vetted these types: loading the file runs them. A person decides.
            decision.promotion_error = (
                "not promoted automatically: its model file holds types the champion's did not "
                f"({', '.join(decision.new_trusted_types)}); review them, then promote it by hand"
            )
            return
        by = (
            f"auto ({alarm.name} entered ALARM at {alarm.state_change_time.isoformat()})" if alarm else "auto"
        )
        try:
            decision.promotion = self.promoter.promote(decision.challenger_version, by=by)
        except (PromotionError, ClientError, BotoCoreError, WaiterError) as problem:
            # Not raised: a retry would retrain again, and the candidate is written already.
            decision.promotion_error = f"{type(problem).__name__}: {problem}"
            logger.error("AutoPromote failed", extra={"error": str(problem)})

    def _write_candidate(
        self,
        decision: RetrainDecision,
        challenger: Any,
        features: pd.DataFrame,
        target: np.ndarray,
        holdout: tuple[pd.DataFrame, np.ndarray],
    ) -> str:
        champion = self.bundle.metadata
        assert decision.challenger_version is not None
        prefix = f"{MODELS_PREFIX}{decision.challenger_version}/"
        model_file, body, trusted = _serialise(challenger, champion.model_file)
        # The clone has the champion's classes, so its types should be the ones a person vetted
        # when packaging the champion; any other is named for whoever approves the candidate.
        decision.new_trusted_types = sorted(set(trusted) - set(champion.trusted_types)) if trusted else []
        metadata = replace(
            champion,
            version=decision.challenger_version,
            model_file=model_file,
            trusted_types=trusted,
            training_metrics=score(challenger, champion, features, target),
            library_versions=library_versions(),
        )
        predictions = np.asarray(challenger.predict(features))
        probabilities = (
            np.asarray(challenger.predict_proba(features), dtype=float)
            if metadata.task == "classification" and hasattr(challenger, "predict_proba")
            else None
        )
        baseline = {
            # Metrics on rows it was not fitted on (the holdout), as `model build` keeps them;
            # the drift reference is the window it learned from.
            "reference_rows": decision.holdout["rows"],
            "reference_metrics": decision.challenger_metrics,
            "drift": drift.build_drift_baseline(features, metadata, predictions, probabilities),
            "retrained_from": {"window": decision.winning_window, "training_rows": len(features)},
        }
        # Where the decision will be recorded, so comparison.json (and a promotion record) names it.
        decision.record_uri = f"s3://{self.config.bucket}/{self._record_key(decision)}"
        comparison = decision.as_dict() | {"candidate_uri": f"s3://{self.config.bucket}/{prefix}"}
        # metadata.json last: a directory without it is visibly incomplete.
        self._put(prefix + model_file, body, "application/octet-stream")
        self._put_json(prefix + "baseline.json", baseline)
        calibration = self._calibration(challenger, metadata, *holdout)
        if calibration is not None:
            self._put_json(prefix + CALIBRATION_FILE, calibration)
        self._put_json(prefix + "comparison.json", comparison)
        self._put_json(prefix + "metadata.json", metadata.to_dict())
        return f"s3://{self.config.bucket}/{prefix}"

    def _calibration(
        self, challenger: Any, metadata: ModelMetadata, features: pd.DataFrame, target: np.ndarray
    ) -> dict[str, Any] | None:
        """calibration.json for the candidate when the champion has one (the batch monitor's
        estimates need it), fitted on the holdout: rows the challenger was not fitted on, as
        `model build` calibrates on its held-out reference."""
        if self.bundle.calibration is None or not hasattr(challenger, "predict_proba"):
            return None
        return fit_calibration(
            np.asarray(challenger.predict_proba(features), dtype=float),
            target,
            np.asarray(challenger.predict(features)),
            list(metadata.classes),
            metadata.positive_class,
        )

    def _record_key(self, decision: RetrainDecision) -> str:
        stamp = decision.decided_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"{MODELS_PREFIX}decisions/{stamp}-{decision.decision}.json"

    def _record(self, decision: RetrainDecision) -> None:
        key = self._record_key(decision)
        decision.record_uri = f"s3://{self.config.bucket}/{key}"
        self._put_json(key, decision.as_dict())

    def _announce(self, decision: RetrainDecision) -> None:
        if not self.config.alert_topic_arn:
            return
        self.sns.publish(
            TopicArn=self.config.alert_topic_arn,
            Subject=announcement_subject(decision.as_dict()),
            Message=retrain_announcement(decision.as_dict()),
        )

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        self.s3.put_object(Bucket=self.config.bucket, Key=key, Body=body, ContentType=content_type)

    def _put_json(self, key: str, document: dict[str, Any]) -> None:
        self._put(
            key, (json.dumps(document, indent=2, default=str) + "\n").encode("utf-8"), "application/json"
        )


def _newest_half_start(train_times: np.ndarray) -> datetime | None:
    """On demand without ``since``: the event time from which the newest batches hold half
    the training rows, a stand-in for "where the degradation started"."""
    if train_times.size == 0:
        return None
    middle = np.sort(train_times)[train_times.size // 2]
    return pd.Timestamp(middle).to_pydatetime().replace(tzinfo=UTC)


def _serialise(estimator: Any, champion_file: str) -> tuple[str, bytes, tuple[str, ...]]:
    """The challenger in the champion's format: skops (with the types it holds, the same
    classes the champion's packager vetted) or joblib."""
    if champion_file.endswith(".skops"):
        import skops.io as sio

        body = sio.dumps(estimator)
        return "model.skops", body, tuple(sorted(sio.get_untrusted_types(data=body)))
    import joblib

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return "model.joblib", buffer.getvalue(), ()
