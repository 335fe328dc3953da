"""Input drift, prediction drift and data quality against the training baseline.

UNDER CONSTRUCTION (issue 5). The interface below is the contract the rest of the
code relies on; keep the signatures.

baseline.json (written by ``modelwatch model build`` / ``model package``) is::

    {
      "reference_rows": 4000,
      "reference_metrics": {"Accuracy": 0.9, ...},      # written by the packager, not here
      "drift": <dict returned by build_drift_baseline>
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.model_bundle import ModelMetadata


def build_drift_baseline(
    reference: pd.DataFrame,
    metadata: ModelMetadata,
    predictions: np.ndarray,
    probabilities: np.ndarray | None,
    bins: int = 10,
) -> dict[str, Any]:
    """Reference distributions of every feature and of the predictions (JSON-ready)."""
    raise NotImplementedError


@dataclass
class DriftResult:
    """What one batch's drift check found."""

    metrics: dict[str, float] = field(default_factory=dict)  # DriftScore, DriftedFeatures, PredictionDrift
    report: dict[str, Any] = field(default_factory=dict)  # the report.json "drift" section
    findings: list[dict[str, Any]] = field(default_factory=list)  # data-quality findings


def compute_drift(
    batch: pd.DataFrame,
    metadata: ModelMetadata,
    predictions: np.ndarray,
    probabilities: np.ndarray | None,
    drift_baseline: dict[str, Any],
    threshold: float,
    min_rows: int,
) -> DriftResult:
    """Compare a scored batch (feature columns as the model saw them) with the baseline."""
    raise NotImplementedError
