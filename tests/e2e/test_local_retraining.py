"""Retraining in the local cloud: batches -> QualityAlarm -> SNS -> RetrainFunction -> candidate
under models/ -> announcement by email and Slack, every hop from template.yaml."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from modelwatch.local.backtest import Backtest
from modelwatch.local.cloud import LocalCloud, VirtualClock
from tests.model_fixtures import churn_frame

EMAIL = "oncall@example.com"
THRESHOLD = "0.5"  # between the test model's healthy (~0.3) and flipped (~0.7) error rates


def write_batches(directory: Path) -> tuple[Path, list[Path]]:
    """Ten 300-row batches; from the seventh on the labels follow the flipped relation."""
    batches, actuals = [], []
    for number in range(10):
        frame = churn_frame(300, seed=200 + number, id_prefix=f"t{number}")
        labels = frame.pop("churned")
        if number >= 6:
            labels = 1 - labels
        path = directory / f"batch-{number:02d}.csv"
        frame.to_csv(path, index=False)
        batches.append(path)
        actuals.append(pd.DataFrame({"record_id": frame["record_id"], "churned": labels}))
    actuals_path = directory / "actuals.csv"
    pd.concat(actuals).to_csv(actuals_path, index=False)
    return actuals_path, batches


def test_quality_alarm_retrains_a_candidate_and_announces_it_by_email_and_slack(tmp_path, classifier_dir):
    actuals_path, batches = write_batches(tmp_path)
    cloud = LocalCloud(
        out_dir=tmp_path / "out",
        model_dir=classifier_dir,
        parameters={"AlertEmail": EMAIL, "QualityThreshold": THRESHOLD},
        clock=VirtualClock(datetime.now(UTC)),
        slack_receiver=True,
    )
    with cloud:
        backtest = Backtest(cloud)
        backtest.load_actuals(actuals_path)
        # When the batches arrive one alarm period apart (RetrainOnAlarm defaults to QualityAlarm)
        results = backtest.run(batches)

        # Then the alarm fired once the flipped batches were 2 of 3 periods, and the retrain
        # function it reached wrote a candidate and recorded the decision
        assert [r.alarms["QualityAlarm"] for r in results][6:8] == ["OK", "ALARM"]
        bucket = cloud.stack.name_of("IngestBucket")
        listed = cloud.clients.s3.list_objects_v2(Bucket=bucket, Prefix="models/")
        keys = [item["Key"] for item in listed.get("Contents", [])]
        (record_key,) = [key for key in keys if key.startswith("models/decisions/")]
        record = json.loads(cloud.clients.s3.get_object(Bucket=bucket, Key=record_key)["Body"].read())
        assert record["decision"] == "candidate", record["reason"]
        assert record["trigger"]["alarm"] == cloud.stack.alarms["QualityAlarm"].name
        assert f"models/{record['challenger_version']}/metadata.json" in keys

        # and the on-call person got the announcement by email and on Slack
        subject = f"modelwatch retraining churn-test: candidate {record['challenger_version']}"
        emails = [a for a in cloud.alerts if a.channel == "email" and a.subject.startswith(subject)]
        assert len(emails) == 1 and emails[0].recipient == EMAIL
        assert "Holdout: the newest" in emails[0].body
        assert cloud.webhook is not None
        posted = [request.json() for request in cloud.webhook.requests]
        assert any(
            payload["text"].startswith("[modelwatch] Retraining churn-test: candidate") for payload in posted
        )

        # and the replay file lists the decision as a model event at the end of the alarm's period
        (event,) = backtest.document()["model_events"]
        alarm_period = backtest.periods[7]
        assert event["event"] == "retrained" and event["version"] == record["challenger_version"]
        assert event["time"] == (alarm_period.start + timedelta(hours=1)).isoformat()
        assert event["holdout"] == {
            "rows": record["holdout"]["rows"],
            "champion": record["champion_metrics"],
            "challenger": record["challenger_metrics"],
        }
        assert f"model retrained {record['challenger_version']}" in alarm_period.events
