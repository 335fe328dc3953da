"""The seed's practice question, replayed in the local cloud from template.yaml.

Accuracy per period is 0.95, 0.93, 0.88, 0.85, 0.80; QualityAlarm watches Accuracy with
LessThanOrEqualToThreshold 0.85. When does retraining start? At the fourth period (0.85 is
"less than or equal to" 0.85), not before. A single period's breach is what the question
asks about, so the alarm alarms on one datapoint (EvaluationPeriods=1, DatapointsToAlarm=1);
at the template's default 2 of 3 it would wait for the fifth.

The batches are built from the sample model's own predictions: in each, the first rows get
the label the model predicts and the rest the other class, so the share the model gets right
is exactly the period's accuracy (checked here with scikit-learn). "Retraining starts" is
asserted as the retrain function acting on the ALARM: its decision record, whatever the
decision. With RetrainMinLabeledRows at its default (1000) and 800 labeled rows by the fourth
period, that decision is a refusal that says why.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from modelwatch.cli.main import main
from modelwatch.model_bundle import load_bundle
from tests.template_resources import TEMPLATE_PATH

ACCURACIES = (0.95, 0.93, 0.88, 0.85, 0.80)
ROWS = 200
PERIOD_SECONDS = 3600  # the template's AlarmPeriodSeconds default
SAMPLE_BATCH = TEMPLATE_PATH.parent / "samplefiles" / "classification" / "batches" / "batch-01.csv"


def test_retraining_starts_at_the_fourth_period_of_the_practice_question(tmp_path, sample_churn_model_dir):
    bundle = load_bundle(sample_churn_model_dir)
    metadata = bundle.metadata
    rows = pd.read_csv(SAMPLE_BATCH, dtype={metadata.id_column: str}).head(ROWS * len(ACCURACIES))
    predicted = np.asarray(bundle.estimator.predict(rows[metadata.feature_names]))
    (negative, positive) = metadata.classes

    # Given five 200-row batches whose labels make the model exactly 0.95 ... 0.80 accurate
    batch_paths, labels = [], []
    for index, accuracy in enumerate(ACCURACIES):
        part = slice(index * ROWS, (index + 1) * ROWS)
        right = round(accuracy * ROWS)
        truth = np.where(
            np.arange(ROWS) < right,
            predicted[part],
            np.where(predicted[part] == positive, negative, positive),
        )
        assert accuracy_score(truth, predicted[part]) == accuracy
        path = tmp_path / f"period-{index + 1}.csv"
        rows.iloc[part].to_csv(path, index=False)
        batch_paths.append(path)
        labels.append(
            pd.DataFrame({metadata.id_column: rows[metadata.id_column].iloc[part], metadata.target: truth})
        )
    actuals_path = tmp_path / "actuals.csv"
    pd.concat(labels).to_csv(actuals_path, index=False)
    summary = tmp_path / "replay.json"

    # When they are replayed one alarm period apart, QualityAlarm on Accuracy <= 0.85, retraining on it
    code = main(
        [
            "replay",
            "--model-dir",
            str(sample_churn_model_dir),
            "--actuals",
            str(actuals_path),
            *("--param", "QualityMetric=Accuracy"),
            *("--param", "QualityComparison=LessThanOrEqualToThreshold"),
            *("--param", "QualityThreshold=0.85"),
            *("--param", "EvaluationPeriods=1"),
            *("--param", "DatapointsToAlarm=1"),
            *("--param", "RetrainOnAlarm=QualityAlarm"),
            "--json",
            str(summary),
            *map(str, batch_paths),
        ]
    )

    # Then each period's published Accuracy is the constructed one
    assert code == 0
    document = json.loads(summary.read_text())
    batches, periods = document["batches"], document["periods"]
    for batch, accuracy in zip(batches, ACCURACIES, strict=True):
        assert (batch["status"], batch["labeled_rows"]) == ("ok", ROWS)
        assert batch["metrics"]["Accuracy"] == pytest.approx(accuracy, abs=1e-12)
        assert batch["model_version"] == metadata.version
    # and QualityAlarm enters ALARM at the end of the fourth period, not before
    assert [b["alarms"]["QualityAlarm"] for b in batches] == ["OK", "OK", "OK", "ALARM", "ALARM"]
    # and the retrain function acted on it then, once, and in no earlier period
    (event,) = document["model_events"]
    fourth_end = datetime.fromisoformat(periods[3]["start"]) + timedelta(seconds=PERIOD_SECONDS)
    assert datetime.fromisoformat(event["time"]) == fourth_end
    assert [any(e.startswith("model ") for e in p["events"]) for p in periods] == [
        False,
        False,
        False,
        True,
        False,
    ]
    assert event["event"] == "refused" and event["version"] is None
    assert event["from_version"] == metadata.version
    assert "only 800 labeled rows" in event["reason"]
    assert "below RetrainMinLabeledRows (1000)" in event["reason"]
