"""What report.json holds, as types: one ``BatchReport`` for every status.

A batch ends in exactly one report:

- ``ok``: scored; ``scored`` says what was measured;
- ``rejected``: the file cannot be scored (bad input, a deleted object, the model's own
  failure on it); ``rejection`` says why and what to do, in words a person can act on;
- ``duplicate``: the same bytes as an earlier version of the key, already counted;
  ``duplicate_of`` names that version and its report;
- ``failed``: a defect in modelwatch itself. The report says so, and the function
  raises, so the error alarm fires and Lambda retries (then the dead-letter queue
  keeps the event).

``to_dict`` gives report.json's flat layout: the common fields, then the fields of
the status.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from modelwatch.metrics import MetricValue
from modelwatch.results import BatchObject
from modelwatch.row_pool import PoolRows

Status = Literal["ok", "rejected", "duplicate", "failed"]


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str


@dataclass
class Scored:
    """What an ``ok`` batch adds to the report."""

    event_time_source: str
    notes: list[str]
    rows: int
    rows_scored: int
    rows_invalid: int
    labeled_rows: int
    label_coverage: float
    metrics: dict[str, float]
    live: bool  # false for a backfill CloudWatch cannot take: nothing published
    quality_metrics_withheld: str | None
    invalid_rows: list[dict[str, Any]]
    invalid_by_reason: dict[str, int]
    data_quality: list[dict[str, Any]]
    drift: dict[str, Any]
    # CBPE: the estimates with their bands, beside the realized values when labels exist
    # (modelwatch.estimation), or why there is no estimate.
    estimated_performance: dict[str, Any]
    actuals_requests: int
    outputs: dict[str, str]
    # What report.html measures the batch against: the baseline's reference metrics and
    # QualityAlarm's metric, threshold and comparison (when the function knows them).
    reference: dict[str, Any] = field(default_factory=dict)
    # The S3 version of predictions.csv.gz written with this report ("" in a bucket without
    # versioning). The label join rewrites the file as labels come; the ledger follows it.
    predictions_version_id: str = ""


@dataclass(frozen=True)
class Rejection:
    """Why a ``rejected`` or ``failed`` batch was not scored."""

    reason: str
    code: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchReport:
    status: Status
    batch: BatchObject
    model: ModelIdentity
    processed_at: str
    event_time: str
    # When the object version was uploaded (S3 LastModified); orders versions of a key.
    uploaded_at: str
    # The datapoints this batch publishes (names in report.json, values in CloudWatch).
    published: dict[str, MetricValue] = field(default_factory=dict)
    # A batch with too few labeled rows to be judged: its row-additive quality metrics, for
    # the model's pool (modelwatch.ledger), published with other batches' rows later. Not in
    # report.json (quality_metrics_withheld says so): they are not this batch's datapoints.
    pooled: dict[str, MetricValue] = field(default_factory=dict)
    # A batch too small for drift or the estimate: its rows for the model's pools of small
    # batches' rows (modelwatch.row_pool), by pool kind. Not in report.json either: the
    # drift and estimated_performance sections say where they went.
    pool_rows: dict[str, PoolRows] = field(default_factory=dict)
    scored: Scored | None = None
    rejection: Rejection | None = None
    duplicate_of: dict[str, str] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "status": self.status,
            "batch": asdict(self.batch),
            "model": asdict(self.model),
            "processed_at": self.processed_at,
            "event_time": self.event_time,
            "uploaded_at": self.uploaded_at,
        }
        if self.scored is not None:
            document.update(asdict(self.scored))
        if self.rejection is not None:
            document.update(asdict(self.rejection))
            document["metrics"] = {}
        if self.duplicate_of is not None:
            document["duplicate_of"] = self.duplicate_of
            document["metrics"] = {}
        document["metrics_published"] = list(self.published)
        document["timings_ms"] = self.timings_ms
        return document
