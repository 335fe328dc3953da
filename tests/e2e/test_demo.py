"""`modelwatch demo` (what `make demo` runs) tells the sample story end to end."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score

from modelwatch.local.cloud import DEFAULT_TEMPLATE
from modelwatch.local.demo import RETRAINING_SAMPLES, run_demo, run_retraining_act
from modelwatch.model_bundle import load_bundle


def test_demo_alarms_on_the_drifted_batches_recovers_and_alerts_by_email_and_slack(
    tmp_path, capfd, sample_churn_model_dir
):
    out = tmp_path / "demo"
    # Act two has its own test below.
    assert run_demo(out, model_dir=sample_churn_model_dir, retraining_samples=None) == 0
    printed = capfd.readouterr().out
    assert f"Output: {out}" in printed and "Timeline" in printed

    document = json.loads((out / "timeline.json").read_text())
    batches = document["batches"]
    assert [batch["status"] for batch in batches] == ["ok"] * 12
    quality = [batch["alarms"]["QualityAlarm"] for batch in batches]
    # samplefiles/README.md: healthy 1-4, drift 5-9, recovered 10-12.
    assert set(quality[:4]) == {"OK"} and "ALARM" in quality[5:9] and quality[-1] == "OK"
    drift = [batch["alarms"]["DriftAlarm"] for batch in batches]
    assert drift.index("ALARM") <= quality.index("ALARM")  # drift moves first, without labels

    alerts = {(alert["channel"], alert["alarm"], alert["state"]) for alert in document["alerts"]}
    for channel in ("email", "slack"):
        assert {(channel, "QualityAlarm", "ALARM"), (channel, "QualityAlarm", "OK")} <= alerts
    emails = sorted(path.name for path in (out / "outbox").glob("*.eml"))
    assert any("ALARM" in name and "ErrorRate" in name for name in emails)
    slack = [json.loads(path.read_text()) for path in sorted((out / "slack").glob("*.json"))]
    assert any("ALARM" in json.dumps(message) and "ErrorRate" in json.dumps(message) for message in slack)

    # The estimate from the model's confidence is there for every batch; the labels of the
    # batches whose input-target relation changed show more error than it explains.
    assert all("EstimatedErrorRate" in batch["metrics"] for batch in batches)
    timeline = (out / "timeline.txt").read_text().splitlines()
    flagged = {int(line[6:8]) for line in timeline if line.startswith("batch-") and "concept drift" in line}
    assert flagged and flagged <= {5, 6, 7, 8, 9}

    # The Slack ALARM for QualityAlarm links the page of the batch whose datapoint moved it
    quality_alarm = next(
        message
        for message in slack
        if "ALARM: " in message["text"] and "ErrorRate" in json.dumps(message["attachments"][0]["blocks"][0])
    )
    moved_at = quality.index("ALARM")
    moved_key = re.escape(batches[moved_at]["key"].removeprefix("incoming/"))
    link = rf"results/{moved_key}/versions/[^/|]+/report\.html\|Report of the batch that moved the alarm>"
    assert re.search(link, json.dumps(quality_alarm, ensure_ascii=False))

    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One report per batch version (with its page), and a copy as each key's newest report
    reports = list((out / "results").glob("*/versions/*/report.json"))
    assert len(reports) == 12
    assert len(list((out / "results").glob("*/report.json"))) == 12
    assert all(report.with_name("report.html").is_file() for report in reports)
    # Processed at the demo's virtual time, each batch is on time: no report says the alarms
    # never evaluate it (they did, above)
    notes = [note for report in reports for note in json.loads(report.read_text())["notes"]]
    assert not [note for note in notes if "more than the alarms look back over" in note]
    # The sample's Parquet batch was scored like the CSV ones
    assert batches[-1]["key"] == "incoming/batch-12.parquet" and batches[-1]["rows"] == 1000


def test_demo_with_late_labels_scores_each_batch_before_its_labels_and_loads_them_a_period_later(
    tmp_path, capfd, sample_churn_model_dir
):
    out = tmp_path / "demo"
    assert (
        run_demo(out, model_dir=sample_churn_model_dir, labels_delay_periods=1, retraining_samples=None) == 0
    )
    printed = capfd.readouterr().out

    document = json.loads((out / "timeline.json").read_text())
    batches, periods = document["batches"], document["periods"]
    # Each batch was scored before any of its labels existed: its error is only estimated then
    assert [batch["labeled_rows"] for batch in batches] == [0] * 12
    for batch in batches:
        assert "EstimatedErrorRate" in batch["metrics"] and "ErrorRate" not in batch["metrics"]
    # and its labels went through the actuals function one period later; one period more for the last
    assert len(periods) == 13
    for number, batch in enumerate(batches, start=1):
        loads = [event for event in periods[number]["events"] if event.startswith("loaded labels of batch")]
        name = batch["key"].removeprefix("incoming/")
        assert [event.split(" (")[0] for event in loads] == [f"loaded labels of {name}"]
    assert "labels of batch-01.csv" in printed and "the error counts when the labels come" in printed
    assert "(final)" in (out / "timeline.txt").read_text()


def test_demo_act_two_retrains_on_the_alarm_promotes_and_brings_the_error_back_under_the_threshold(
    tmp_path, capfd, sample_churn_model_dir
):
    champion = load_bundle(sample_churn_model_dir)
    out = tmp_path / "act-two"
    run_retraining_act(out, template_path=DEFAULT_TEMPLATE, model_dir=sample_churn_model_dir)
    printed = capfd.readouterr().out
    document = json.loads((out / "timeline.json").read_text())
    batches = document["batches"]
    quality = [batch["alarms"]["QualityAlarm"] for batch in batches]
    # The change comes with batch 4, and the alarm (1 of 3 breaching periods) with it. The
    # retrain defers (batch 4 is its holdout); the schedule retries after batch 5 and promotes.
    assert quality[:3] == ["OK"] * 3 and quality[3:5] == ["ALARM"] * 2

    events = [(event["event"], event["version"]) for event in document["model_events"]]
    assert [event for event, _ in events] == ["retrain_deferred", "retrained", "promoted"]
    new_version = events[2][1]
    assert events[1][1] == new_version != champion.metadata.version
    periods = document["periods"]
    assert "model retrain_deferred" in periods[3]["events"]
    assert f"model retrained {new_version}" in periods[4]["events"]
    versions = [batch["model_version"] for batch in batches]
    assert versions == [champion.metadata.version] * 5 + [new_version] * 3
    # the champion's own directory is untouched: promotion published a layer version
    assert load_bundle(sample_churn_model_dir).metadata.version == champion.metadata.version

    # After the promotion the error is back under the threshold, and lower than the old model's
    # on the very same rows (scikit-learn here, with the old model).
    actuals = pd.read_csv(RETRAINING_SAMPLES / "actuals.csv").set_index("record_id")["churned"]
    for batch in batches[5:]:
        frame = pd.read_csv(RETRAINING_SAMPLES / "batches" / batch["key"].removeprefix("incoming/"))
        labels = actuals.loc[frame["record_id"]].to_numpy()
        old_error = 1.0 - accuracy_score(
            labels, champion.estimator.predict(frame[champion.metadata.feature_names])
        )
        # the published ErrorRate is scikit-learn's on the new model's predictions (its predictions file)
        name = batch["key"].removeprefix("incoming/")
        (predictions_file,) = (out / "results" / name / "versions").glob("*/predictions.csv.gz")
        predicted = pd.read_csv(predictions_file).set_index("record_id")["prediction"]
        new_error = 1.0 - accuracy_score(labels, predicted.loc[frame["record_id"]].to_numpy())
        assert np.isclose(batch["metrics"]["ErrorRate"], new_error, rtol=0, atol=1e-9)
        assert new_error < 0.2 < old_error
    assert quality[-1] == "OK"

    subjects = [
        line
        for path in (out / "outbox").glob("*.eml")
        for line in path.read_text().splitlines()
        if line.startswith("Subject:")
    ]
    assert (
        f"Subject: modelwatch retraining churn-classifier: candidate {new_version} beats "
        f"{champion.metadata.version}, promoted" in subjects
    ), subjects
    assert f"Promoted {new_version}" in printed and "old model" in printed
