"""`modelwatch replay` on data it has never seen: per-batch metrics equal scikit-learn's.

The CSVs are generated here, with a different seed and id scheme than anything in
samplefiles/, and the reference numbers are computed with scikit-learn from the
predictions the pipeline wrote (copied out with --results) and the actuals the test wrote.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score

from modelwatch.cli.main import main
from modelwatch.local import cloud as cloud_module
from modelwatch.local.cloud import LOCAL_ALERT_EMAIL
from modelwatch.local.delivery import WebhookReceiver
from tests.model_fixtures import churn_frame


def test_replay_reports_scikit_learn_metrics_per_batch_and_the_alarm_timeline(
    tmp_path, classifier_dir, capfd
):
    model_dir = classifier_dir
    batch_paths, actual_frames = [], []
    rng = np.random.default_rng(2024)
    for number in range(1, 4):
        frame = churn_frame(250, seed=9000 + number, id_prefix=f"replay{number}")
        labels = frame.pop("churned")
        keep = rng.uniform(size=len(frame)) > 0.1  # some labels have not arrived
        actual_frames.append(pd.DataFrame({"record_id": frame["record_id"], "churned": labels})[keep])
        frame["note"] = "pass-through"
        path = tmp_path / f"history-{number:02d}.csv"
        frame.to_csv(path, index=False)
        batch_paths.append(path)
    actuals = pd.concat(actual_frames)
    actuals_path = tmp_path / "labels.csv"
    actuals.to_csv(actuals_path, index=False)
    results_dir, summary = tmp_path / "results", tmp_path / "replay.json"

    code = main(
        [
            "replay",
            "--model-dir",
            str(model_dir),
            "--actuals",
            str(actuals_path),
            "--param",
            "QualityThreshold=0.9",
            "--results",
            str(results_dir),
            "--json",
            str(summary),
            *map(str, batch_paths),
        ]
    )

    assert code == 0
    document = json.loads(summary.read_text())
    assert [b["key"] for b in document["batches"]] == [f"incoming/{p.name}" for p in batch_paths]
    truth = dict(zip(actuals["record_id"], actuals["churned"], strict=True))
    for batch, path in zip(document["batches"], batch_paths, strict=True):
        # The key's report names its version's predictions (results/<key>/versions/<id>/).
        report = json.loads((results_dir / path.name / "report.json").read_text())
        predictions_key = report["outputs"]["predictions"].split("/results/", 1)[1]
        with gzip.open(results_dir / predictions_key, "rt") as handle:
            predictions = pd.read_csv(handle, dtype={"record_id": str})
        labeled = predictions[predictions["record_id"].isin(truth)]
        y_true = labeled["record_id"].map(truth).astype(int)
        y_pred = labeled["prediction"].astype(int)
        assert batch["status"] == "ok"
        assert (batch["rows"], batch["labeled_rows"]) == (250, len(labeled))
        metrics = batch["metrics"]
        assert metrics["ErrorRate"] == pytest.approx(1 - accuracy_score(y_true, y_pred), abs=1e-12)
        assert metrics["Precision"] == pytest.approx(precision_score(y_true, y_pred), abs=1e-12)
        assert metrics["Recall"] == pytest.approx(recall_score(y_true, y_pred), abs=1e-12)
        assert metrics["F1"] == pytest.approx(f1_score(y_true, y_pred), abs=1e-12)
        assert metrics["ROCAUC"] == pytest.approx(roc_auc_score(y_true, labeled["probability"]), abs=1e-12)
        assert metrics["LogLoss"] == pytest.approx(
            log_loss(y_true, labeled["probability"], labels=[0, 1]), rel=1e-6
        )
        assert (predictions["note"] == "pass-through").all()
        assert report["status"] == "ok"
        # The --param override is what the alarm compared against: nothing breaches 0.9.
        assert batch["alarms"]["QualityAlarm"] == "OK"
        # Labels came with every batch: the labels feed is alive
        assert batch["alarms"]["LabelsStaleAlarm"] == "OK"
    # (the test model has no baseline, so SignalsUnavailableAlarm does alert: alerts are delivered)
    assert document["alerts"]
    assert not [a for a in document["alerts"] if a["alarm"] == "QualityAlarm" and a["state"] == "ALARM"]
    # No channel was named: the replay's stack has the local stand-in address (the template
    # refuses a stack without a channel), and says so
    assert document["channels"] == [{"channel": "email", "endpoint": LOCAL_ALERT_EMAIL}]
    assert f"{LOCAL_ALERT_EMAIL} is a stand-in" in capfd.readouterr().out


SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles" / "classification"
# Under the sample model's healthy error rate (~0.12), so two sample batches are enough to alarm.
LOW_THRESHOLD = "QualityThreshold=0.05"


@pytest.fixture(scope="module")
def sample_model(tmp_path_factory) -> Path:
    model_dir = tmp_path_factory.mktemp("sample-model")
    train = str(SAMPLES / "train.csv")
    assert main(["model", "build", "--train", train, "--target", "churned", "--out", str(model_dir)]) == 0
    return model_dir


def replay_samples(model_dir: Path, summary: Path, *params: str) -> dict:
    arguments = ["replay", "--model-dir", str(model_dir), "--actuals", str(SAMPLES / "actuals.csv")]
    for param in (LOW_THRESHOLD, *params):
        arguments += ["--param", param]
    batches = [str(SAMPLES / "batches" / f"batch-{number:02d}.csv") for number in (1, 2)]
    assert main([*arguments, "--json", str(summary), *batches]) == 0
    return json.loads(summary.read_text())


def test_replay_with_a_slack_secret_lists_the_messages_the_webhook_received(
    tmp_path, sample_model, monkeypatch
):
    # Given a spy on the local webhook receivers the replay starts
    receivers: list[WebhookReceiver] = []

    class RecordedReceiver(WebhookReceiver):
        def __init__(self) -> None:
            super().__init__()
            receivers.append(self)

    monkeypatch.setattr(cloud_module, "WebhookReceiver", RecordedReceiver)

    # When the replay names a Slack secret (and no email address)
    document = replay_samples(sample_model, tmp_path / "replay.json", "SlackWebhookSecretName=team/slack")

    # Then the Slack channel is listed, and its alerts are exactly the messages posted to the webhook
    assert document["channels"] == [{"channel": "slack", "endpoint": "team/slack"}]
    assert document["no_channel"] is None
    assert [batch["alarms"]["QualityAlarm"] for batch in document["batches"]][-1] == "ALARM"
    (receiver,) = receivers
    received = [json.loads(request.body) for request in receiver.requests]
    slack = [alert for alert in document["alerts"] if alert["channel"] == "slack"]
    assert received and [alert["message"] for alert in slack] == received
    assert {alert["channel"] for alert in document["alerts"]} == {"slack"}
    quality_alarm = [a for a in slack if a["alarm"] == "QualityAlarm" and a["state"] == "ALARM"]
    assert len(quality_alarm) == 1 and "ErrorRate" in quality_alarm[0]["body"]
    assert all(alert["time"] and alert["body"] for alert in slack)


def test_replay_opted_out_of_alert_channels_says_nobody_would_be_told(tmp_path, sample_model, capfd):
    # A team that subscribes its own endpoint to the AlertTopic deploys without a channel
    document = replay_samples(sample_model, tmp_path / "replay.json", "AllowNoAlertChannel=true")

    # The alarm fired, but nobody would have been told, and the replay says why.
    assert [batch["alarms"]["QualityAlarm"] for batch in document["batches"]][-1] == "ALARM"
    assert document["alerts"] == [] and document["channels"] == []
    assert "no alert channel is configured" in document["no_channel"]
    assert "no alert channel is configured" in capfd.readouterr().out
    # With actuals, each batch holds the realized metrics and the estimate beside them.
    for batch in document["batches"]:
        assert {"ErrorRate", "ROCAUC", "EstimatedErrorRate", "EstimatedROCAUC"} <= set(batch["metrics"])


ESTIMATED = {
    "EstimatedErrorRate",
    "EstimatedAccuracy",
    "EstimatedPrecision",
    "EstimatedRecall",
    "EstimatedF1",
}


def test_replay_without_actuals_reports_and_alarms_on_the_estimate_alone(tmp_path, sample_model, capfd):
    # Given two sample batches and no labels at all
    summary = tmp_path / "replay.json"
    batches = [str(SAMPLES / "batches" / f"batch-{number:02d}.csv") for number in (1, 2)]
    arguments = ["replay", "--model-dir", str(sample_model), "--param", LOW_THRESHOLD, "--json", str(summary)]

    assert main([*arguments, *batches]) == 0

    # Then every batch's metrics are the estimates (no realized metric is made up) ...
    document = json.loads(summary.read_text())
    for batch in document["batches"]:
        assert batch["labeled_rows"] == 0
        assert ESTIMATED | {"EstimatedROCAUC"} <= set(batch["metrics"])
        assert not {"ErrorRate", "Accuracy", "ROCAUC"} & set(batch["metrics"])
        assert 0.05 < batch["metrics"]["EstimatedErrorRate"] < 0.2  # the healthy batches' ~0.11
    # ... and the estimate alone moves its alarm (QualityAlarm's threshold, 0.05, by default)
    final = document["batches"][-1]["alarms"]
    assert final["EstimatedQualityAlarm"] == "ALARM" and final["QualityAlarm"] != "ALARM"
    # ... while LabelsStaleAlarm says no label was joined, as it would over a deployed model
    # without labels, and the replay says why and how a model that never gets labels turns it off
    assert [batch["alarms"]["LabelsStaleAlarm"] for batch in document["batches"]] == ["ALARM", "ALARM"]
    assert "LabelStalenessMinutes=0" in capfd.readouterr().out
