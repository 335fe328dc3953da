"""The local cloud end to end: template -> upload -> function -> metrics -> alarm -> SNS -> email and Slack.

A small scenario on a model the tests build: two healthy batches, then two whose actuals
contradict the model, so the quality alarm (1 of 3 periods, from template.yaml) must fire
at the end of the third period. Each hop is checked where it leaves its trace.
"""

from __future__ import annotations

import email
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import boto3
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from modelwatch.local.backtest import Backtest, virtual_start
from modelwatch.local.cloud import LocalCloud, RealClock, VirtualClock
from tests.model_fixtures import churn_frame
from tests.unit.test_readme_commands import readme_commands, runs_on_the_local_cloud

REPO_ROOT = Path(__file__).resolve().parents[2]
# The AWS CLI `make install` puts in the virtualenv (requirements/dev.txt), not the host's.
VENV_AWS = Path(sys.executable).parent / "aws"
EMAIL = "oncall@example.com"
# Between the test model's healthy error rate (~0.3: the relation is noisy) and that of inverted
# labels (~0.7); passed as a parameter override, as `--param` does.
THRESHOLD = "0.5"


@pytest.fixture(scope="module")
def model_dir(classifier_dir) -> Path:
    return classifier_dir  # the session's model (tests/conftest.py): the local cloud only reads it


def write_scenario(directory: Path) -> tuple[Path, list[Path]]:
    """Four 300-row batches; batches 3 and 4 get inverted labels (error rate far over THRESHOLD)."""
    batches, actuals = [], []
    for number in range(1, 5):
        frame = churn_frame(300, seed=100 + number, id_prefix=f"e{number}")
        labels = frame.pop("churned")
        if number >= 3:
            labels = 1 - labels
        # A space and a non-ASCII letter: S3 sends such keys URL-encoded and the function must decode.
        path = directory / f"day {number} bätch.csv"
        frame.to_csv(path, index=False)
        batches.append(path)
        actuals.append(pd.DataFrame({"record_id": frame["record_id"], "churned": labels}))
    actuals_path = directory / "actuals.csv"
    pd.concat(actuals).to_csv(actuals_path, index=False)
    return actuals_path, batches


def test_a_degrading_model_reaches_the_on_call_person_by_email_and_slack(tmp_path, model_dir):
    actuals_path, batches = write_scenario(tmp_path)
    cloud = LocalCloud(
        out_dir=tmp_path / "out",
        model_dir=model_dir,
        parameters={"AlertEmail": EMAIL, "QualityThreshold": THRESHOLD},
        clock=VirtualClock(datetime.now(UTC)),
        slack_receiver=True,
    )
    with cloud:
        stack = cloud.stack
        quality = stack.alarms["QualityAlarm"]
        backtest = Backtest(cloud)
        backtest.load_actuals(actuals_path)
        # Hop 1: the actuals file reached the actuals function and the table named by the template.
        count = cloud.clients.dynamodb.scan(TableName=stack.name_of("ActualsTable"), Select="COUNT")["Count"]
        assert count == 1200

        start = virtual_start(quality.period_seconds, len(batches))
        results = backtest.run(batches, start=start)

        for result, path in zip(results, batches, strict=True):
            # Hop 2: the URL-encoded S3 event reached the batch monitor, which decoded the key.
            assert result.key == f"incoming/{path.name}" and result.status == "ok"
            assert result.report["batch"]["key"] == result.key
            assert result.report["event_time_source"] == "batch-time metadata"
            # Hop 3: the metric in CloudWatch, at the batch's virtual time, equals scikit-learn's.
            predictions = pd.read_csv(
                io.BytesIO(
                    cloud.clients.s3.get_object(
                        Bucket=stack.name_of("IngestBucket"),
                        Key=result.report["outputs"]["predictions"].split("/", 3)[3],
                    )["Body"].read()
                ),
                compression="gzip",
            )
            labeled = predictions.dropna(subset=["actual"])
            expected = 1 - accuracy_score(labeled["actual"].astype(int), labeled["prediction"].astype(int))
            point = cloud.clients.cloudwatch.get_metric_statistics(
                Namespace=quality.namespace,
                MetricName=quality.metric_name,
                Dimensions=[{"Name": n, "Value": v} for n, v in quality.dimensions],
                StartTime=result.batch_time,
                EndTime=result.batch_time + timedelta(seconds=quality.period_seconds),
                Period=quality.period_seconds,
                Statistics=["Average"],
            )["Datapoints"]
            assert quality.metric_name == "ErrorRate"  # the template default this scenario is built for
            assert point and point[0]["Average"] == pytest.approx(expected, abs=1e-9)

        # Hop 4: the alarm from the template moved to ALARM when the first bad period ended.
        assert [r.alarms["QualityAlarm"] for r in results] == ["OK", "OK", "ALARM", "ALARM"]
        described = cloud.clients.cloudwatch.describe_alarms(AlarmNames=[quality.name])["MetricAlarms"][0]
        assert described["StateValue"] == "ALARM"

        # Hop 5: SNS delivered CloudWatch's notification to the email subscription's outbox.
        alarm_emails = [
            a
            for a in cloud.alerts
            if a.channel == "email" and a.alarm == "QualityAlarm" and a.state == "ALARM"
        ]
        assert len(alarm_emails) == 1
        message = email.message_from_bytes(alarm_emails[0].path.read_bytes(), policy=policy.default)
        assert message["To"] == EMAIL
        assert message["Subject"] == f'ALARM: "{quality.name}" in US East (N. Virginia)'
        assert f"greater than the threshold ({THRESHOLD})" in message.get_content()
        assert alarm_emails[0].at == results[2].evaluated_at

        # Hop 6: the Slack notifier (when the template has one) posted to the local webhook.
        if cloud.webhook is None:
            pytest.skip("template.yaml has no Slack notifier yet; email hops checked")
        posted = [r.json() for r in cloud.webhook.requests]
        assert any(quality.name in str(payload) and "ALARM" in str(payload) for payload in posted)
        assert any(
            a.channel == "slack" and a.alarm == "QualityAlarm" and a.state == "ALARM" for a in cloud.alerts
        )


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_local_up_processes_a_file_dropped_by_an_outside_client(tmp_path, model_dir):
    # Given the real-clock loop, as `modelwatch local up` runs it
    actuals_path, batches = write_scenario(tmp_path)
    cloud = LocalCloud(out_dir=tmp_path / "out", model_dir=model_dir, clock=RealClock())
    with cloud:
        cloud.run_in_background()
        bucket = cloud.bucket_for("incoming/")
        # When another process's client (like the AWS CLI) uploads to the endpoint
        outside = boto3.client(
            "s3",
            endpoint_url=cloud.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="cli",
            aws_secret_access_key="cli",
        )
        outside.upload_file(str(actuals_path), bucket, "actuals/actuals.csv")
        # The actuals must be in before the batch is scored, as in production.
        wait_for(
            lambda: (
                cloud.clients.dynamodb.scan(TableName=cloud.stack.name_of("ActualsTable"), Select="COUNT")[
                    "Count"
                ]
                == 1200
            )
        )
        outside.upload_file(str(batches[0]), bucket, f"incoming/{batches[0].name}")
        # Then the poller hands it to the batch monitor, whose report appears under results/
        deadline = time.monotonic() + 60
        report_key = f"results/{batches[0].name}/report.json"
        while time.monotonic() < deadline:
            listed = outside.list_objects_v2(Bucket=bucket, Prefix=report_key).get("KeyCount", 0)
            if listed:
                break
            time.sleep(0.5)
        assert listed, "no report was written within 60 s"
        report = outside.get_object(Bucket=bucket, Key=report_key)["Body"].read()
        assert b'"status": "ok"' in report and b'"labeled_rows": 300' in report

        # The report is written before the metrics, so the invocation may still be running;
        # it is recorded when it returns.
        wait_for(lambda: any(i.function == "BatchMonitorFunction" for i in cloud.runtime.invocations))
        # The label join (stream) and the retrain function (every alarm on the topic) are
        # counted on their own below, or not at all.
        by_s3 = [
            i.function
            for i in cloud.runtime.invocations
            if i.function not in ("LabelJoinFunction", "RetrainFunction")
        ]
        assert by_s3 == ["ActualsLoaderFunction", "BatchMonitorFunction"]  # no repeats
        # Each label written reached the actuals table's stream consumers once (when the template has any)
        for mapping in cloud.stack.stream_mappings:
            handed = [d for d in cloud.streams.deliveries if d.mapping == mapping]
            assert all(d.invocation.ok for d in handed)
            assert sum(len(d.sequence_numbers) for d in handed) == 1200


def test_local_up_delivers_one_event_per_version_of_a_key_overwritten_within_a_second(tmp_path, model_dir):
    # Given the real-clock loop, and two different bodies for one key
    _, batches = write_scenario(tmp_path)
    whole = batches[0].read_bytes()
    first_rows = b"".join(whole.splitlines(keepends=True)[:101])  # header and 100 rows
    cloud = LocalCloud(out_dir=tmp_path / "out", model_dir=model_dir, clock=RealClock())
    with cloud:
        cloud.run_in_background()
        bucket = cloud.bucket_for("incoming/")
        outside = boto3.client(
            "s3",
            endpoint_url=cloud.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="cli",
            aws_secret_access_key="cli",
        )
        # When both land between two polls of the bucket (the loop is held meanwhile)
        with cloud.paused():
            uploaded = {
                outside.put_object(Bucket=bucket, Key="incoming/quick.csv", Body=body)["VersionId"]: rows
                for body, rows in ((first_rows, 100), (whole, 300))
            }
        # Then the batch monitor gets one event per version, and each read the version it named
        wait_for(lambda: sum(i.function == "BatchMonitorFunction" for i in cloud.runtime.invocations) >= 2)
        # (each version's results have their own place: results/quick.csv/versions/<id>/)
        wait_for(lambda: len(report_keys(outside, bucket, "results/quick.csv/versions/")) >= 2)
        reports = [
            json.loads(outside.get_object(Bucket=bucket, Key=key)["Body"].read())
            for key in report_keys(outside, bucket, "results/quick.csv/versions/")
        ]
        assert len(uploaded) == 2
        assert {report["batch"]["version_id"]: report["rows"] for report in reports} == uploaded


def report_keys(s3, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return [item["Key"] for item in listed if item["Key"].endswith("/report.json")]


def test_the_readmes_aws_cli_commands_for_make_local_run_against_the_local_cloud(tmp_path, model_dir):
    # Given the README's AWS CLI commands for the local cloud, and the local cloud as
    # `make local` starts it (files are not processed here: the commands are what is checked)
    commands = [
        words
        for words in readme_commands((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
        if runs_on_the_local_cloud(words) and Path(words[0]).name == "aws"
    ]
    assert commands, "README.md shows no AWS CLI command for the local cloud"
    # Any credentials work, and nothing of this machine's AWS configuration is read.
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
    )
    cloud = LocalCloud(out_dir=tmp_path / "out", model_dir=model_dir, clock=RealClock())
    with cloud:
        bucket = cloud.bucket_for("incoming/")
        uploads = 0
        for words in commands:
            # `make local` listens on 4566; here on a free port. The README's region is the stack's.
            options = dict(zip(words, words[1:], strict=False))
            assert (
                options["--endpoint-url"] == "http://127.0.0.1:4566"
                and options["--region"] == cloud.stack.region
            )
            arguments = [
                cloud.endpoint_url if previous == "--endpoint-url" else word.replace("<bucket>", bucket)
                for previous, word in zip(["", *words[1:]], words[1:], strict=False)
            ]

            # When each runs with the virtualenv's AWS CLI, from the repository root
            result = subprocess.run(
                [str(VENV_AWS), *arguments],
                cwd=REPO_ROOT,
                env=environment,
                capture_output=True,
                text=True,
                timeout=120,
            )

            # Then it succeeds, and a copy lands in the local bucket byte for byte
            assert result.returncode == 0, f"{' '.join(words)}\n{result.stderr}"
            if "cp" in arguments and arguments[arguments.index("cp") - 1] == "s3":
                source, destination = arguments[-2:]
                uploads += 1
                copied_bucket, copied_key = destination.removeprefix("s3://").split("/", 1)
                copied = cloud.clients.s3.get_object(Bucket=copied_bucket, Key=copied_key)["Body"].read()
                assert copied == (REPO_ROOT / source).read_bytes()
        assert uploads, "the README shows no upload (s3 cp) to the local cloud"
