"""How long one batch's drift check takes (scripts/bench.py imports time_drift and prints it).

Not a test: timings on a shared machine vary too much to assert on.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.drift import build_drift_baseline, compute_drift
from modelwatch.model_bundle import Feature, ModelMetadata

CATEGORIES = [f"segment-{i}" for i in range(30)]


def _frame(rng: np.random.Generator, rows: int, numeric: int, categorical: int, shift: float) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    for i in range(numeric):
        columns[f"num{i}"] = rng.normal(shift * (i % 3), 1.0 + i % 4, rows)
    for i in range(categorical):
        # Object (str) columns, as the CSV and JSONL readers hand them over.
        columns[f"cat{i}"] = rng.choice(np.array(CATEGORIES, dtype=object), rows)
    return pd.DataFrame(columns)


def time_drift(rows: int = 100_000, features: int = 20, repeats: int = 5) -> dict[str, Any]:
    """Median wall time (ms) of compute_drift on a rows x features batch.

    A quarter of the features are categorical (30 categories, object dtype), the rest
    numeric; a binary classifier with probabilities; the baseline comes from a
    10,000-row reference. Building the baseline is timed once, for information.
    """
    categorical = max(1, features // 4)
    numeric = features - categorical
    metadata = ModelMetadata(
        name="bench",
        version="1",
        task="classification",
        model_file="model.joblib",
        id_column="record_id",
        target="y",
        features=tuple(Feature(f"num{i}", "numeric") for i in range(numeric))
        + tuple(Feature(f"cat{i}", "categorical") for i in range(categorical)),
        classes=(0, 1),
        positive_label=1,
    )
    rng = np.random.default_rng(0)
    reference = _frame(rng, 10_000, numeric, categorical, shift=0.0)
    reference_positive = rng.random(10_000)
    started = time.perf_counter()
    baseline = build_drift_baseline(
        reference,
        metadata,
        (reference_positive > 0.5).astype(int),
        np.column_stack([1 - reference_positive, reference_positive]),
    )
    build_ms = (time.perf_counter() - started) * 1000

    batch = _frame(rng, rows, numeric, categorical, shift=0.1)
    positive = rng.random(rows)
    labels, probabilities = (positive > 0.5).astype(int), np.column_stack([1 - positive, positive])
    runs_ms, cpu_ms = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        compute_drift(batch, metadata, labels, probabilities, baseline, threshold=0.2, min_rows=200)
        runs_ms.append((time.perf_counter() - started) * 1000)
        cpu_ms.append((time.process_time() - cpu_started) * 1000)
    return {
        "rows": rows,
        "features": features,
        "numeric_features": numeric,
        "categorical_features": categorical,
        "repeats": repeats,
        "median_ms": statistics.median(runs_ms),
        "runs_ms": runs_ms,
        # CPU time of this process: what the wall time would be on an idle machine,
        # since the check is single-threaded; on a shared box the wall time is noisier.
        "median_cpu_ms": statistics.median(cpu_ms),
        "baseline_build_ms": build_ms,
    }


if __name__ == "__main__":
    print(time_drift())
