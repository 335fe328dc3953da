"""Under covariate shift alone the estimate tracks the realized error, batch by batch.

The scenario is generated here: the input-target relation is one fixed logistic function
throughout; the degraded batches draw more of their customers from a population near
the decision boundary (inside the training data's range, where the model learned the
relation), so the model really gets worse, and only because its inputs moved. The model
is `modelwatch model build`'s default pipeline, calibration included.

Run with `-s` to see the per-batch table and the gaps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelwatch.model_bundle import load_bundle
from modelwatch.modeling import ColumnOptions, build_model
from modelwatch.scoring import Scorer, predict
from modelwatch.validation import validate_batch

SEGMENT_EFFECT = {"retail": 0.0, "smb": 0.4, "enterprise": -0.4}
# The share of each batch drawn from near the decision boundary: 0 is the training mix.
HEALTHY, DEGRADED = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0), (0.7, 0.85, 1.0)
SHIFTS = (*HEALTHY[:3], *DEGRADED, *HEALTHY[3:])
THRESHOLD = 0.2  # the ErrorRate the alarm would compare against
BATCH_ROWS = 2000


def customers(rng: np.random.Generator, rows: int, near_boundary: float) -> pd.DataFrame:
    near = rng.random(rows) < near_boundary
    spread = np.where(near, 0.5, 1.6)
    return pd.DataFrame(
        {
            "usage": rng.normal(0, 1, rows) * spread,
            "tickets": rng.normal(0, 1, rows) * spread,
            "tenure": rng.normal(0, 1, rows),
            "segment": rng.choice(list(SEGMENT_EFFECT), rows),
        }
    ).round(4)


def churned(rng: np.random.Generator, frame: pd.DataFrame) -> np.ndarray:
    """The one relation of the whole scenario."""
    logit = (
        2.2 * frame["tickets"]
        - 1.8 * frame["usage"]
        - 0.3 * frame["tenure"]
        + frame["segment"].map(SEGMENT_EFFECT)
    )
    return (rng.random(len(frame)) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(int)


def test_under_covariate_shift_the_estimate_tracks_the_realized_error_and_crosses_the_threshold_with_it(
    tmp_path,
):
    # Given a model built on 20,000 rows of the training mix (a quarter held out as reference)
    rng = np.random.default_rng(20261201)
    train = customers(rng, 20_000, 0.0)
    train["churned"] = churned(rng, train)
    train.insert(0, "record_id", [f"t{i:05d}" for i in range(len(train))])
    train.to_csv(tmp_path / "train.csv", index=False)
    build_model(tmp_path / "train.csv", ColumnOptions(target="churned"), tmp_path / "model")
    bundle = load_bundle(tmp_path / "model")
    scorer = Scorer(bundle, min_labeled_rows=30, drift_threshold=0.2)

    # When healthy, then shifted, then healthy batches are scored with their labels
    rows = []
    for number, shift in enumerate(SHIFTS, start=1):
        batch = customers(rng, BATCH_ROWS, shift)
        labels = churned(rng, batch)
        batch.insert(0, "record_id", [f"b{number}-{i:05d}" for i in range(BATCH_ROWS)])
        validated = validate_batch(batch, bundle.metadata, "batch.csv", 5)
        predictions = predict(bundle, validated.features, "batch.csv")
        measured = scorer.measure(validated, predictions, dict(zip(batch["record_id"], labels, strict=True)))
        estimate = measured.estimation["metrics"]["ErrorRate"]
        rows.append(
            {
                "batch": number,
                "near_boundary": shift,
                "estimated": estimate["estimated"],
                "lower": estimate["lower"],
                "upper": estimate["upper"],
                "realized": measured.quality["ErrorRate"].value,
                "findings": [finding["finding"] for finding in measured.estimation["findings"]],
            }
        )
    table = pd.DataFrame(rows)
    table["gap"] = (table["estimated"] - table["realized"]).abs()
    print("\n" + table.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    print(
        f"ErrorRate |estimated - realized| over {len(table)} batches: "
        f"mean {table['gap'].mean():.4f}, max {table['gap'].max():.4f}"
    )

    # Then the estimate tracks the realized error ...
    assert table["gap"].mean() < 0.015 and table["gap"].max() < 0.03
    # ... crosses the threshold in the degraded batches and in no healthy one, as the realized error does
    degraded = table["near_boundary"] > 0
    assert (table.loc[degraded, "realized"] > THRESHOLD).all() and (
        table.loc[~degraded, "realized"] < THRESHOLD
    ).all()
    assert (table.loc[degraded, "estimated"] > THRESHOLD).all()
    assert (table.loc[~degraded, "estimated"] < THRESHOLD).all()
    # ... and, the relation being unchanged, no batch is reported as concept drift
    assert not any(table["findings"].map(bool))
