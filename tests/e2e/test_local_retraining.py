"""Retraining in the local cloud: batches -> QualityAlarm -> SNS -> RetrainFunction -> candidate
under models/ -> promoted (AutoPromote) -> the next batch scored by it -> rollback -> the next
batch scored by the old model again; announced by email and Slack, every hop from template.yaml."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score

from modelwatch.cli.main import main
from modelwatch.local.backtest import Backtest
from modelwatch.local.cloud import LocalCloud, VirtualClock
from modelwatch.model_bundle import load_bundle
from modelwatch.results import BatchObject
from tests.model_fixtures import CATEGORICAL, NUMERIC, churn_frame

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


def flipped_batch(directory: Path, number: int) -> tuple[Path, Path, pd.DataFrame]:
    """One more batch of the flipped relation, its actuals file, and the rows with their labels."""
    frame = churn_frame(300, seed=200 + number, id_prefix=f"t{number}")
    frame["churned"] = 1 - frame["churned"]
    path, actuals = directory / f"batch-{number:02d}.csv", directory / f"actuals-{number:02d}.csv"
    frame.drop(columns="churned").to_csv(path, index=False)
    frame[["record_id", "churned"]].to_csv(actuals, index=False)
    return path, actuals, frame


def score_one(
    cloud: LocalCloud, backtest: Backtest, directory: Path, number: int
) -> tuple[dict, pd.DataFrame]:
    """Labels first, then the batch: its report, and the rows it scored."""
    path, actuals, frame = flipped_batch(directory, number)
    backtest.load_actuals(actuals)
    key = f"incoming/{path.name}"
    dispatch = cloud.upload(key, path.read_bytes(), metadata={"batch-time": cloud.clock.now().isoformat()})
    assert all(invocation.ok for invocation in dispatch.invocations), dispatch.invocations
    version_id = (
        dispatch.invocations and cloud.clients.s3.head_object(Bucket=dispatch.bucket, Key=key)["VersionId"]
    )
    report_key = BatchObject(dispatch.bucket, key, version_id=str(version_id)).report_key
    report = cloud.clients.s3.get_object(Bucket=dispatch.bucket, Key=report_key)["Body"].read()
    return json.loads(report), frame


def error_rate(model_dir: Path, frame: pd.DataFrame) -> float:
    """scikit-learn's error on the rows, with the model loaded from its directory."""
    estimator = load_bundle(model_dir).estimator
    return 1 - accuracy_score(frame["churned"], estimator.predict(frame[NUMERIC + CATEGORICAL]))


def download(cloud: LocalCloud, bucket: str, prefix: str, into: Path) -> Path:
    into.mkdir(parents=True)
    for item in cloud.clients.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        name = item["Key"][len(prefix) :]
        (into / name).write_bytes(cloud.clients.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    return into


def test_quality_alarm_retrains_promotes_and_rolls_back_announced_by_email_and_slack(
    tmp_path, classifier_dir
):
    actuals_path, batches = write_batches(tmp_path)
    cloud = LocalCloud(
        out_dir=tmp_path / "out",
        model_dir=classifier_dir,
        # 2 of 3: the retrain holds out the newest flipped batch and learns from the one before.
        parameters={
            "AlertEmail": EMAIL,
            "QualityThreshold": THRESHOLD,
            "AutoPromote": "true",
            "DatapointsToAlarm": "2",
        },
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

        # and, AutoPromote being on, promoted it: a model layer version, the pointer, a record
        new_version, old_version = record["challenger_version"], record["champion_version"]
        assert record["status"] == "promoted"
        pointer = json.loads(
            cloud.clients.s3.get_object(Bucket=bucket, Key="models/champion.json")["Body"].read()
        )
        assert pointer["version"] == new_version and pointer["earlier"][0]["version"] == old_version
        (promotion_key,) = [key for key in keys if key.startswith("models/promotions/")]
        assert promotion_key.endswith(f"-promoted-{new_version}.json")
        promotion = json.loads(cloud.clients.s3.get_object(Bucket=bucket, Key=promotion_key)["Body"].read())
        assert (promotion["from_version"], promotion["to_version"]) == (old_version, new_version)
        assert promotion["by"].startswith(f"auto ({cloud.stack.alarms['QualityAlarm'].name} entered ALARM")
        assert promotion["holdout"]["challenger"]["ErrorRate"] < promotion["holdout"]["champion"]["ErrorRate"]
        assert promotion["decision_record"] == f"s3://{bucket}/{record_key}"
        # (calibration.json only when the champion has one: this one has none)
        assert (f"models/{new_version}/calibration.json" in keys) == (
            classifier_dir / "calibration.json"
        ).is_file()

        # When the next batch (the flipped relation still) arrives
        report, frame = score_one(cloud, backtest, tmp_path, 10)

        # Then the new version scored it, with a lower error than the old model gives on the
        # same rows (scikit-learn, the old model's own directory), the error the new model's
        # files give (downloaded from the candidate directory)
        new_dir = download(cloud, bucket, f"models/{new_version}/", tmp_path / "new-model")
        assert report["model"]["version"] == new_version
        print(  # pytest -s shows the figures the README quotes
            f"\nafter promotion: ErrorRate {report['metrics']['ErrorRate']:.3f} by {new_version}, "
            f"{error_rate(classifier_dir, frame):.3f} by the old model on the same rows"
        )
        assert report["metrics"]["ErrorRate"] < error_rate(classifier_dir, frame) - 0.2
        assert abs(report["metrics"]["ErrorRate"] - error_rate(new_dir, frame)) < 1e-9
        assert "ChampionMismatch" in report["metrics_published"] and not any(
            "promoted champion" in note for note in report["notes"]
        )

        # When a person rolls back with the CLI
        outputs = cloud.stack.outputs
        common = [
            "--bucket",
            bucket,
            "--layer-name",
            outputs["ModelLayerName"],
            "--endpoint-url",
            cloud.endpoint_url,
        ]
        assert main(["model", "rollback", *common, "--topic-arn", outputs["AlertTopicArn"]]) == 0
        cloud.deliver_pending()

        # Then the next batch is scored by the old version again, with its error
        report, frame = score_one(cloud, backtest, tmp_path, 11)
        assert report["model"]["version"] == old_version
        assert abs(report["metrics"]["ErrorRate"] - error_rate(classifier_dir, frame)) < 1e-9

        # and CloudWatch has the switch the dashboard draws: BatchesProcessed by model version
        def batches_by(version: str) -> float:
            answer = cloud.clients.cloudwatch.get_metric_statistics(
                Namespace="ModelWatch",
                MetricName="BatchesProcessed",
                Dimensions=[
                    {"Name": "ModelName", "Value": cloud.stack.parameters["ModelName"]},
                    {"Name": "ModelVersion", "Value": version},
                ],
                StartTime=cloud.clock.now() - timedelta(days=14),
                EndTime=cloud.clock.now() + timedelta(days=1),
                Period=15 * 86400,
                Statistics=["Sum"],
            )
            return sum(point["Sum"] for point in answer["Datapoints"])

        # (the alarm fired as batch 7's period ended: batches 8 and 9 of the backtest were already
        # the new version's, then batch 10; batches 0-7 and 11 the old one's)
        scored_by = [result.report["model"]["version"] for result in results]
        assert scored_by == [old_version] * 8 + [new_version] * 2
        assert (batches_by(old_version), batches_by(new_version)) == (9.0, 3.0)
        history = [
            json.loads(cloud.clients.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            for item in cloud.clients.s3.list_objects_v2(Bucket=bucket, Prefix="models/promotions/")[
                "Contents"
            ]
        ]
        assert [(r["event"], r["to_version"], r["by"]) for r in history] == [
            ("promoted", new_version, promotion["by"]),
            ("rolled_back", old_version, "cli (local)"),
        ]

        # (the functions registered in moto's Lambda are configuration only: moto never tried
        # to run one itself, in Docker, for the uploads' S3 notifications)
        assert "docker" not in (tmp_path / "out" / "logs" / "embedded-aws.log").read_text().lower()

        # and the on-call person got the announcement by email and on Slack
        subject = f"modelwatch retraining churn-test: candidate {record['challenger_version']}"
        emails = [a for a in cloud.alerts if a.channel == "email" and a.subject.startswith(subject)]
        assert len(emails) == 1 and emails[0].recipient == EMAIL
        assert "Holdout: the newest" in emails[0].body and "Promoted at once (AutoPromote)" in emails[0].body
        rollbacks = [a for a in cloud.alerts if a.channel == "email" and "rolled back to" in a.subject]
        assert (
            len(rollbacks) == 1 and f"rolled back to {old_version} (was {new_version})" in rollbacks[0].body
        )
        assert cloud.webhook is not None
        posted = [request.json() for request in cloud.webhook.requests]
        assert any(
            payload["text"].startswith("[modelwatch] Retraining churn-test: candidate") for payload in posted
        )

        # and the replay file lists the decision as a model event at the end of the alarm's period,
        # then the promotion; the rollback, on demand after the last period, comes last
        events = backtest.document()["model_events"]
        assert [(e["event"], e["version"]) for e in events] == [
            ("retrained", new_version),
            ("promoted", new_version),
            ("rolled_back", old_version),
        ]
        event = events[0]
        alarm_period = backtest.periods[7]
        assert events[1]["time"] == event["time"]
        assert event["event"] == "retrained" and event["version"] == record["challenger_version"]
        assert event["time"] == (alarm_period.start + timedelta(hours=1)).isoformat()
        assert event["holdout"] == {
            "rows": record["holdout"]["rows"],
            "champion": record["champion_metrics"],
            "challenger": record["challenger_metrics"],
        }
        assert f"model retrained {record['challenger_version']}" in alarm_period.events


def test_an_alarm_on_the_first_changed_batch_defers_the_retrain_and_the_schedule_retries_it(
    tmp_path, classifier_dir
):
    # At the template's DatapointsToAlarm (1) QualityAlarm fires on the first flipped batch,
    # whose rows the retrain holds out: nothing changed is left to learn from. Deciding "not
    # better" there ended the loop (the alarm stays in ALARM and sends nothing more).
    actuals_path, batches = write_batches(tmp_path)
    cloud = LocalCloud(
        out_dir=tmp_path / "out",
        model_dir=classifier_dir,
        parameters={"AlertEmail": EMAIL, "QualityThreshold": THRESHOLD, "AutoPromote": "true"},
        clock=VirtualClock(datetime.now(UTC)),
    )
    with cloud:
        (schedule,) = cloud.stack.schedules
        assert schedule.every_seconds == 3600 and json.loads(schedule.input) == {
            "modelwatch": "deferred-retrains"
        }
        assert (
            cloud.clients.scheduler.get_schedule(Name=schedule.name)["ScheduleExpression"] == "rate(1 hour)"
        )
        backtest = Backtest(cloud)
        backtest.load_actuals(actuals_path)
        results = backtest.run(batches)

        # The alarm fired as the first flipped batch's period ended, and the retrain deferred
        assert [r.alarms["QualityAlarm"] for r in results][5:7] == ["OK", "ALARM"]
        bucket = cloud.stack.name_of("IngestBucket")
        listed = cloud.clients.s3.list_objects_v2(Bucket=bucket, Prefix="models/decisions/")
        records = [
            json.loads(cloud.clients.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            for item in sorted(listed["Contents"], key=lambda item: item["Key"])
        ]
        assert [r["decision"] for r in records] == ["deferred", "candidate"], [r["reason"] for r in records]
        deferred, candidate = records
        assert "held-out batches only" in deferred["reason"] and "runs again by itself" in deferred["reason"]
        assert deferred["holdout"]["batches"] == 1 and deferred["holdout"]["rows"] == 300

        # and the hourly schedule retried it once the next batch's labels were in: trained on the
        # first flipped batch, judged on the second, a candidate, promoted (AutoPromote)
        assert candidate["trigger"]["deferred_attempt"] == 1
        assert candidate["trigger"]["state_change_time"] == deferred["trigger"]["state_change_time"]
        assert candidate["winning_window"] == "since degradation" and candidate["status"] == "promoted"
        assert candidate["holdout"]["rows"] == 300
        assert candidate["challenger_quality"] < candidate["champion_quality"] - 0.2
        events = backtest.document()["model_events"]
        assert [e["event"] for e in events] == ["retrain_deferred", "retrained", "promoted"]
        assert events[1]["time"] == (backtest.periods[7].start + timedelta(hours=1)).isoformat()
        # the last two batches were scored by the retrained model, and the deferral is gone
        scored_by = [result.report["model"]["version"] for result in results]
        assert scored_by == [candidate["champion_version"]] * 8 + [candidate["challenger_version"]] * 2
        ledger = cloud.stack.name_of("BatchLedgerTable")
        deferral_id = f"retrain-deferred#churn-test#{cloud.stack.alarms['QualityAlarm'].name}"
        assert "Item" not in cloud.clients.dynamodb.get_item(TableName=ledger, Key={"id": {"S": deferral_id}})
        # Both decisions were announced by email
        subjects = [alert.subject for alert in cloud.alerts if alert.channel == "email"]
        assert any("deferred until the change can be learned" in subject for subject in subjects), subjects
        assert any(f"candidate {candidate['challenger_version']}" in text for text in subjects), subjects
