"""Retraining against in-process moto: batches scored by the batch monitor (which fills the
ledger), labels in the actuals table, the retrain function run on the alarm message the
template's QualityAlarm would send; every figure recomputed here with scikit-learn."""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import fastparquet
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from modelwatch.local.alarms import AlarmDefinition, alarm_state_change_message, evaluate_alarm
from modelwatch.model_bundle import load_bundle
from tests.cloudformation import Resolver
from tests.events import load_event
from tests.integration.conftest import BUCKET, Stack, load_handler, s3_event
from tests.lambda_context import LambdaContext
from tests.model_fixtures import CATEGORICAL, NUMERIC, churn_frame
from tests.template_resources import function_environment, load_template, resolve

FEATURES = NUMERIC + CATEGORICAL
ROWS_PER_BATCH = 300
# The functions with the model layer (a promotion switches them); the retrain function is one too.
FUNCTIONS_WITH_MODEL = ("BatchMonitor", "ActualsLoader", "LabelJoin")
FUNCTIONS_WITH_MODEL_NAMES = tuple(f"modelwatch-test-{logical}Function" for logical in FUNCTIONS_WITH_MODEL)
# A threshold between the champion's error on the relation it learned (~0.3: churn_frame is
# noisy) and on the flipped one (~0.7).
QUALITY_THRESHOLD = "0.5"


@dataclass
class Scenario:
    frames: list[pd.DataFrame]  # each batch with its label column as loaded into the actuals table
    period_starts: list[datetime]
    alarm_message: dict[str, Any] | None
    retrain_env: dict[str, str]
    topic_arn: str
    queue_url: str
    later: list[Callable[[], None]]  # uploads of the batches held back, in order


def template_parameters() -> dict[str, str]:
    return {"ModelName": "churn-test", "QualityThreshold": QUALITY_THRESHOLD}


def build_scenario(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    model_dir: Path,
    batches: int,
    changed_from: int | None,
    auto_promote: bool = False,
    held_back: int = 0,
) -> Scenario:
    """``batches`` batches of ROWS_PER_BATCH rows, one per alarm period ending in the current
    hour; from batch ``changed_from`` on, the input-target relation is flipped (churners stay).
    ``auto_promote``: AutoPromote=true, and the functions with the model layer in moto's Lambda.
    ``held_back``: the last batches (with their labels) are uploaded later, by ``Scenario.later``."""
    monkeypatch.setenv("MODEL_DIR", str(model_dir))
    now = datetime.now(UTC)
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=batches)
    frames, starts, later = [], [], []
    monitor = load_handler("batch_monitor")

    def upload(index: int, frame: pd.DataFrame, start: datetime) -> None:
        stack.put_actuals(dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True)))
        key = f"incoming/batch-{index:02d}.csv"
        version = stack.s3.put_object(
            Bucket=BUCKET,
            Key=key,
            Body=frame.drop(columns="churned").to_csv(index=False).encode(),
            Metadata={"batch-time": (start + timedelta(minutes=5)).isoformat()},
        )["VersionId"]
        event = s3_event(key)
        event["Records"][0]["s3"]["object"]["versionId"] = version
        monitor.lambda_handler(event, LambdaContext.of("BatchMonitorFunction"))

    for index in range(batches):
        frame = churn_frame(ROWS_PER_BATCH, seed=100 + index, id_prefix=f"b{index:02d}")
        if changed_from is not None and index >= changed_from:
            frame["churned"] = 1 - frame["churned"]
        start = first + timedelta(hours=index)
        if index < batches - held_back:
            upload(index, frame, start)
        else:
            later.append(functools.partial(upload, index, frame, start))
        frames.append(frame)
        starts.append(start)

    # The template's QualityAlarm, evaluated at the end of each period over the champion's
    # ErrorRate per period (computed here with scikit-learn): the first ALARM message.
    template = load_template()
    resolver = Resolver(template, **template_parameters())
    alarm = AlarmDefinition.from_cloudformation(
        resolver.resolve(template["Resources"]["QualityAlarm"]["Properties"])
    )
    champion = load_bundle(model_dir).estimator
    errors = [1 - accuracy_score(frame["churned"], champion.predict(frame[FEATURES])) for frame in frames]
    state, message = "INSUFFICIENT_DATA", None
    for index in range(batches):
        evaluation = evaluate_alarm(alarm, state, errors[: index + 1], newest_period_start=starts[index])
        if evaluation.changed and evaluation.state == "ALARM" and message is None:
            message = alarm_state_change_message(
                alarm, evaluation, region="us-east-1", account_id="123456789012",
                state_change_time=starts[index] + timedelta(hours=1),
            )  # fmt: skip
        state = evaluation.state

    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name="alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alert-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    names = {
        "ActualsTable": stack.actuals_table,
        "BatchLedgerTable": stack.ledger_table,
        "IngestBucket": BUCKET,
        "AlertTopic": topic_arn,
        "AWS::StackName": "modelwatch-test",
        "AutoPromote": "true" if auto_promote else "false",
        **{
            f"{logical}Function": name
            for logical, name in zip(FUNCTIONS_WITH_MODEL, FUNCTIONS_WITH_MODEL_NAMES, strict=True)
        },
        **{
            logical: resolver.resolve({"Ref": logical})
            for logical in ("QualityAlarm", "EstimatedQualityAlarm", "DriftAlarm")
        },
    }
    environment = {
        name: resolve(value, names, f"RetrainFunction.{name}")
        for name, value in function_environment("RetrainFunction").items()
    }
    environment["MODEL_DIR"] = str(model_dir)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if auto_promote:
        from tests.integration.test_promotion import deployed

        deployed(model_dir, tuple(environment["MODEL_FUNCTIONS"].split(",")))
    return Scenario(frames, starts, message, environment, topic_arn, queue_url, later)


def sns_event(message: dict[str, Any] | str) -> dict[str, Any]:
    event = load_event("alert-notifier-alarm")
    event["Records"][0]["Sns"]["Message"] = message if isinstance(message, str) else json.dumps(message)
    return event


def run_retrain(message: dict[str, Any] | str) -> dict[str, Any]:
    return load_handler("retrain").lambda_handler(sns_event(message), LambdaContext.of("RetrainFunction"))


def decision_record(stack: Stack) -> dict[str, Any]:
    keys = stack.keys("models/decisions/")
    assert len(keys) == 1, keys
    return json.loads(stack.read(keys[0]))


def announcements(scenario: Scenario) -> list[str]:
    messages = boto3.client("sqs").receive_message(QueueUrl=scenario.queue_url, MaxNumberOfMessages=10)
    return [message["Body"] for message in messages.get("Messages", [])]


def rows_of(frames: list[pd.DataFrame], indices: range) -> pd.DataFrame:
    return pd.concat([frames[index] for index in indices], ignore_index=True)


def error_rate(estimator: Any, frame: pd.DataFrame) -> float:
    return 1 - accuracy_score(frame["churned"], estimator.predict(frame[FEATURES]))


def download_model_dir(stack: Stack, prefix: str, into: Path) -> Path:
    into.mkdir(parents=True)
    for key in stack.keys(prefix):
        (into / key.removeprefix(prefix)).write_bytes(stack.read(key))
    return into


def test_a_changed_relation_makes_the_challenger_from_the_degradation_a_candidate(
    stack, monkeypatch, tmp_path
):
    # Given 10 batches whose last 4 follow a flipped input-target relation, and the ALARM
    # QualityAlarm sends when the flipped batches breach its threshold
    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=10, changed_from=6)
    assert scenario.alarm_message is not None
    assert (
        scenario.alarm_message["AlarmName"] == json.loads(scenario.retrain_env["ALARM_NAMES"])["QualityAlarm"]
    )

    # When the retrain function receives it
    result = run_retrain(scenario.alarm_message)

    # Then the degradation window starts at batch 6 (the alarm's oldest breaching period), the
    # holdout is the newest batch (a fifth of the 1,200 rows since then, rounded up to a whole
    # batch), and the challenger fitted since the degradation beats the whole window's
    record = decision_record(stack)
    assert result["decisions"][0]["decision"] == record["decision"] == "candidate"
    assert record["holdout"]["rows"] == ROWS_PER_BATCH
    assert record["trigger"]["degradation_start"] == scenario.period_starts[6].isoformat()
    assert record["winning_window"] == "since degradation"
    champion = load_bundle(stack.model_dir).estimator
    holdout = rows_of(scenario.frames, range(9, 10))
    since_degradation = rows_of(scenario.frames, range(6, 9))
    whole = rows_of(scenario.frames, range(0, 9))
    expected_challenger = clone(champion).fit(since_degradation[FEATURES], since_degradation["churned"])
    whole_challenger = clone(champion).fit(whole[FEATURES], whole["churned"])
    assert record["champion_metrics"]["ErrorRate"] == pytest.approx(error_rate(champion, holdout), abs=1e-12)
    assert record["challenger_metrics"]["ErrorRate"] == pytest.approx(
        error_rate(expected_challenger, holdout), abs=1e-12
    )
    windows = {window["name"]: window for window in record["windows"]}
    assert windows["whole window"]["quality"] == pytest.approx(
        error_rate(whole_challenger, holdout), abs=1e-12
    )
    assert windows["since degradation"]["rows"] == 3 * ROWS_PER_BATCH
    assert windows["whole window"]["rows"] == 9 * ROWS_PER_BATCH
    assert record["improvement"] == pytest.approx(
        error_rate(champion, holdout) - error_rate(expected_challenger, holdout), abs=1e-12
    )
    assert record["improvement"] >= 0.01
    print(  # pytest -s shows the figures the README quotes
        f"\nholdout {record['holdout']['rows']} rows: ErrorRate champion {record['champion_quality']:.4f}, "
        + ", ".join(f"{w['name']} {w['quality']:.4f}" for w in record["windows"])
    )

    # and the candidate's model directory loads as a model layer and predicts as refitted here
    version = record["challenger_version"]
    candidate = load_bundle(download_model_dir(stack, f"models/{version}/", tmp_path / "candidate"))
    assert candidate.metadata.version == version != "test"
    np.testing.assert_array_equal(
        candidate.estimator.predict(holdout[FEATURES]), expected_challenger.predict(holdout[FEATURES])
    )
    assert candidate.baseline["drift"]["reference_rows"] == 3 * ROWS_PER_BATCH
    assert json.loads(stack.read(f"models/{version}/comparison.json"))["decision"] == "candidate"

    # and the announcement names the versions, the window that won, the holdout and both scores
    (text,) = announcements(scenario)
    assert text.startswith("[modelwatch] Retraining churn-test: candidate")
    for expected in (
        f"Challenger version: {version}",
        "Champion version: test",
        "'since degradation'",
        "<- won",
        "the newest 300 labeled rows",
        f"champion {record['champion_metrics']['ErrorRate']:.4f}",
        f"challenger {record['challenger_metrics']['ErrorRate']:.4f}",
        "awaiting approval",
        f"modelwatch model promote --version {version} --bucket {BUCKET} --layer-name modelwatch-test-model",
    ):
        assert expected in text, expected


def test_a_challenger_that_is_not_better_is_no_candidate_and_the_announcement_says_so(stack, monkeypatch):
    # Given batches that all follow the relation the champion learned
    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=6, changed_from=None)

    # When retraining runs (an ALARM of QualityAlarm, as if batches 4 and 5 had crossed it)
    stamps = [f"0.6 ({scenario.period_starts[index]:%d/%m/%y %H:%M:%S})" for index in (5, 4)]
    message = {
        "AlarmName": json.loads(scenario.retrain_env["ALARM_NAMES"])["QualityAlarm"],
        "NewStateValue": "ALARM",
        "OldStateValue": "OK",
        "NewStateReason": f"Threshold Crossed: 2 out of the last 3 datapoints [{', '.join(stamps)}] were ...",
        "StateChangeTime": datetime.now(UTC).isoformat(),
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:x",
        "Trigger": {"Period": 3600, "DatapointsToAlarm": 2, "EvaluationPeriods": 3},
    }
    run_retrain(message)

    # Then the decision is "not better", with the improvement recomputed here under 0.01
    record = decision_record(stack)
    champion = load_bundle(stack.model_dir).estimator
    holdout = rows_of(scenario.frames, range(5, 6))
    assert record["decision"] == "not_better"
    assert record["champion_metrics"]["ErrorRate"] == pytest.approx(error_rate(champion, holdout), abs=1e-12)
    assert record["improvement"] < 0.01
    assert stack.keys("models/") == stack.keys("models/decisions/")  # no model directory
    (text,) = announcements(scenario)
    assert "the challenger is not better than test" in text
    assert "less than RetrainMinImprovement (0.01)" in text


def run_schedule(request_id: str = "schedule-1") -> dict[str, Any] | None:
    """The retrain function's hourly schedule (template.yaml: DeferredRetrains) fires once:
    what it did with QualityAlarm's deferral, None when there was none."""
    context = LambdaContext.of("RetrainFunction", aws_request_id=request_id)
    result = load_handler("retrain").lambda_handler(load_event("retrain-deferred-schedule"), context)
    assert [looked["alarm"] for looked in result["deferrals"]] in ([], [quality_alarm_name()])
    return result["deferrals"][0] if result["deferrals"] else None


def quality_alarm_name() -> str:
    return json.loads(os.environ["ALARM_NAMES"])["QualityAlarm"]


def set_quality_alarm(scenario: Scenario, state: str) -> None:
    """The template's QualityAlarm in CloudWatch, in ``state`` (the deferral checks it)."""
    template = load_template()
    alarm = AlarmDefinition.from_cloudformation(
        Resolver(template, **template_parameters()).resolve(
            template["Resources"]["QualityAlarm"]["Properties"]
        )
    )
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(**alarm.put_request())
    cloudwatch.set_alarm_state(AlarmName=alarm.name, StateValue=state, StateReason="set by the test")


def deferral_item(stack: Stack) -> dict[str, Any] | None:
    item_id = f"retrain-deferred#churn-test#{quality_alarm_name()}"
    return stack.dynamodb.get_item(
        TableName=stack.ledger_table, Key={"id": {"S": item_id}}, ConsistentRead=True
    ).get("Item")


def decision_records(stack: Stack) -> list[dict[str, Any]]:
    return [json.loads(stack.read(key)) for key in sorted(stack.keys("models/decisions/"))]


def test_an_alarm_on_the_first_changed_batch_defers_and_the_schedule_retrains_once_it_can_learn(
    stack, monkeypatch, tmp_path
):
    # Given the template's default alarm (1 breaching period of 3), which fires on the
    # first batch that follows the flipped relation: the newest batch, which retraining holds
    # out. The batch after it comes later.
    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=7, changed_from=5, held_back=1)
    assert scenario.alarm_message is not None
    assert "1 out of the last" in scenario.alarm_message["NewStateReason"]
    set_quality_alarm(scenario, "ALARM")

    # When the retrain function receives it
    run_retrain(scenario.alarm_message)

    # Then no challenger could learn the change (none of its rows was left to train on): the
    # retrain is deferred, not ended, and the decision and announcement say so
    (record,) = decision_records(stack)
    assert record["trigger"]["degradation_start"] == scenario.period_starts[5].isoformat()
    assert record["holdout"]["rows"] == ROWS_PER_BATCH
    windows = {window["name"]: window for window in record["windows"]}
    assert windows["since degradation"]["rows"] == 0 and windows["since degradation"]["skipped"]
    assert (record["decision"], record["status"]) == ("deferred", "deferred")
    assert "in the held-out batches only" in record["reason"] and "runs again by itself" in record["reason"]
    (text,) = announcements(scenario)
    assert "deferred until the change can be learned" in text and "in the held-out batches only" in text
    item = deferral_item(stack)
    assert item is not None and item["attempts"] == {"N": "0"} and item["labeled_rows"] == {"N": "300"}

    # When the schedule looks before more labels came: nothing is read or decided
    waiting = run_schedule()
    assert waiting is not None
    assert waiting["outcome"] == "waiting" and "300 labeled rows since" in waiting["why"]
    assert len(decision_records(stack)) == 1

    # When the next flipped batch has come with its labels, and the schedule looks again
    scenario.later[0]()
    retried = run_schedule("schedule-2")

    # Then it retrained on the first flipped batch, judged on the second: a candidate, its
    # error on the holdout the one scikit-learn gives for the candidate's own files
    assert retried is not None and retried["outcome"] == "retried"
    first, second = decision_records(stack)
    assert first == record and second["decision"] == "candidate", second["reason"]
    assert second["trigger"]["deferred_attempt"] == 1
    assert second["trigger"]["state_change_time"] == record["trigger"]["state_change_time"]
    assert second["winning_window"] == "since degradation"
    assert second["holdout"]["rows"] == ROWS_PER_BATCH
    candidate_dir = download_model_dir(
        stack, f"models/{second['challenger_version']}/", tmp_path / "candidate"
    )
    candidate = load_bundle(candidate_dir).estimator
    assert second["challenger_quality"] == pytest.approx(error_rate(candidate, scenario.frames[6]), abs=1e-12)
    assert second["champion_quality"] == pytest.approx(
        error_rate(load_bundle(stack.model_dir).estimator, scenario.frames[6]), abs=1e-12
    )
    assert second["challenger_quality"] < second["champion_quality"] - 0.2
    # and the deferral is gone: the next look does nothing
    assert deferral_item(stack) is None
    assert run_schedule("schedule-3") is None


def test_a_deferred_retrain_is_dropped_once_its_alarm_left_alarm(stack, monkeypatch):
    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=7, changed_from=5, held_back=1)
    set_quality_alarm(scenario, "ALARM")
    run_retrain(scenario.alarm_message)
    assert deferral_item(stack) is not None

    # When the alarm went back to OK before the next labels, then the batch came anyway
    set_quality_alarm(scenario, "OK")
    scenario.later[0]()
    looked = run_schedule()

    # Then nothing was retrained, and the deferral is gone, saying why
    assert looked is not None and looked["outcome"] == "dropped" and "is OK now" in looked["why"]
    assert [r["decision"] for r in decision_records(stack)] == ["deferred"]
    assert deferral_item(stack) is None


def test_two_deliveries_of_the_schedule_retry_a_deferred_retrain_once(stack, monkeypatch):
    # EventBridge Scheduler delivers at least once: the deferral is claimed like a batch
    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=7, changed_from=5, held_back=1)
    set_quality_alarm(scenario, "ALARM")
    run_retrain(scenario.alarm_message)
    scenario.later[0]()
    from modelwatch.retrain_deferral import Deferrals

    deferrals = Deferrals(stack.dynamodb, stack.ledger_table)
    pending = deferrals.pending("churn-test", quality_alarm_name())
    assert pending is not None
    # (a second invocation between the first's look and its retrain: it claimed the deferral first)
    assert deferrals.claim(pending, "the-other-invocation")

    looked = run_schedule("schedule-1")

    assert looked == {
        "alarm": quality_alarm_name(),
        "outcome": "taken",
        "why": "another invocation is retrying it",
    }
    assert [r["decision"] for r in decision_records(stack)] == ["deferred"]


def test_too_few_labeled_rows_refuse_with_the_reason(stack, monkeypatch):
    # Given two batches: 600 labeled rows, under RetrainMinLabeledRows' default of 1000
    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=2, changed_from=None)

    # When retraining runs on the first ALARM-like message
    message = {
        "AlarmName": json.loads(scenario.retrain_env["ALARM_NAMES"])["QualityAlarm"],
        "NewStateValue": "ALARM",
        "StateChangeTime": datetime.now(UTC).isoformat(),
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:x",
    }
    run_retrain(message)

    # Then it refuses, saying how many rows there were and what is needed
    record = decision_record(stack)
    assert record["decision"] == "refused"
    assert "only 600 labeled rows in the last 14 days (2 batches)" in record["reason"]
    assert "RetrainMinLabeledRows (1000)" in record["reason"]
    (text,) = announcements(scenario)
    assert "refused" in text and "RetrainMinLabeledRows (1000)" in text


def test_messages_that_are_no_alarm_of_retrain_on_alarm_start_nothing(stack, monkeypatch):
    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=1, changed_from=None)
    names = json.loads(scenario.retrain_env["ALARM_NAMES"])
    base = {
        "StateChangeTime": datetime.now(UTC).isoformat(),
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:1:alarm:x",
    }

    results = [
        run_retrain({**base, "AlarmName": names["QualityAlarm"], "NewStateValue": "OK"}),
        run_retrain(
            {**base, "AlarmName": names["DriftAlarm"], "NewStateValue": "ALARM"}
        ),  # not in the default
        run_retrain("[modelwatch] Retraining churn-test: refused, test stays"),  # its own announcement
    ]

    assert [result["decisions"] for result in results] == [[], [], []]
    assert stack.keys("models/") == []


def test_a_users_own_pipeline_with_another_estimator_retrains(stack, monkeypatch, tmp_path):
    # Given a model directory packaged (skops) around the user's own fitted pipeline: a random forest
    from modelwatch.model_bundle import Feature, ModelMetadata
    from modelwatch.modeling.directory import write_model_directory

    train = churn_frame(1500, seed=1)
    pipeline = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [("plan", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)], remainder="passthrough"
                ),
            ),  # fmt: skip
            ("forest", RandomForestClassifier(n_estimators=40, min_samples_leaf=20, random_state=0)),
        ]
    ).fit(train[FEATURES], train["churned"])
    metadata = ModelMetadata(
        name="churn-test", version="forest-1", task="classification", model_file="model.skops",
        id_column="record_id", target="churned",
        features=(*(Feature(n, "numeric", False) for n in NUMERIC), Feature("plan", "categorical", False)),
        classes=(0, 1), positive_label=1,
    )  # fmt: skip
    reference = churn_frame(400, seed=2)
    write_model_directory(
        tmp_path / "forest", pipeline, metadata, reference[FEATURES], reference["churned"].to_numpy()
    )
    assert (tmp_path / "forest" / "calibration.json").is_file()
    scenario = build_scenario(
        stack, monkeypatch, tmp_path / "forest", batches=10, changed_from=6, auto_promote=True
    )

    # When the alarm starts a retrain (AutoPromote on)
    run_retrain(scenario.alarm_message or {})

    # Then the challenger is the user's pipeline, refitted, stored as skops, and it loads and predicts
    record = decision_record(stack)
    assert record["decision"] == "candidate"
    champion = load_bundle(tmp_path / "forest").estimator
    since_degradation = rows_of(scenario.frames, range(6, 9))
    holdout = rows_of(scenario.frames, range(9, 10))
    expected = clone(champion).fit(since_degradation[FEATURES], since_degradation["churned"])
    assert record["challenger_metrics"]["ErrorRate"] == pytest.approx(
        error_rate(expected, holdout), abs=1e-12
    )
    version = record["challenger_version"]
    assert stack.keys(f"models/{version}/model.skops")
    assert record["new_trusted_types"] == []  # the refitted clone holds only the types vetted at packaging
    candidate = load_bundle(download_model_dir(stack, f"models/{version}/", tmp_path / "candidate"))
    assert isinstance(candidate.estimator.named_steps["forest"], RandomForestClassifier)
    np.testing.assert_array_equal(
        candidate.estimator.predict_proba(holdout[FEATURES]), expected.predict_proba(holdout[FEATURES])
    )
    # with the calibration the champion had (estimated performance), fitted on the holdout
    assert candidate.calibration is not None and candidate.calibration["classes"] == [0, 1]

    # and it was promoted: the model layer version the functions now have is that directory
    assert record["status"] == "promoted" and record["promotion"]["to_version"] == version
    with zipfile.ZipFile(io.BytesIO(stack.read(f"models/{version}/layer.zip"))) as archive:
        archive.extractall(tmp_path / "layer")
    served = load_bundle(tmp_path / "layer" / "model")
    assert served.metadata.version == version and served.calibration == candidate.calibration
    np.testing.assert_array_equal(
        served.estimator.predict_proba(holdout[FEATURES]), expected.predict_proba(holdout[FEATURES])
    )
    configuration = boto3.client("lambda").get_function_configuration(
        FunctionName=FUNCTIONS_WITH_MODEL_NAMES[0]
    )
    assert configuration["Layers"][-1]["Arn"] == record["promotion"]["layer_version_arn"]


def test_model_retrain_on_demand_runs_the_same_retraining_and_prints_the_decision(stack, monkeypatch, capsys):
    # Given the changed relation from batch 6 on, and a person who knows when it began
    from modelwatch.cli.main import main

    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=10, changed_from=6)
    capsys.readouterr()  # the batch monitor's log lines
    arguments = [
        "model", "retrain", "--model-dir", str(stack.model_dir), "--bucket", BUCKET,
        "--actuals-table", stack.actuals_table, "--ledger-table", stack.ledger_table,
        "--topic-arn", scenario.topic_arn, "--since", scenario.period_starts[6].isoformat(),
    ]  # fmt: skip

    # When `modelwatch model retrain` runs, then again with a minimum the window cannot meet
    status = main(arguments)
    printed = capsys.readouterr().out
    refused = main([*arguments, "--min-labeled-rows", "5000"])

    # Then it decides as the function does, prints the announcement and records both decisions
    assert status == 0 and refused == 3
    # (stdout also holds the log lines of the modelwatch logger, which Powertools configured)
    assert "\n[modelwatch] Retraining churn-test: candidate" in "\n" + printed
    assert "Trigger: on demand" in printed and "'since degradation'" in printed and "<- won" in printed
    decisions = sorted(stack.keys("models/decisions/"))
    assert [key.rsplit("-", 1)[1] for key in decisions] == ["candidate.json", "refused.json"]
    assert len(announcements(scenario)) == 2


def test_a_champion_whose_clone_cannot_be_fitted_refuses_and_says_what_it_raised(
    stack, monkeypatch, tmp_path
):
    # Given a champion that predicts (it was fitted) but whose parameters no longer fit:
    # scikit-learn validates C > 0 when fitting, so its clone's fit raises
    import shutil

    import joblib

    model_dir = tmp_path / "unfittable"
    shutil.copytree(stack.model_dir, model_dir)
    champion = joblib.load(model_dir / "model.joblib")
    champion.set_params(logisticregression__C=-1.0)
    joblib.dump(champion, model_dir / "model.joblib")
    scenario = build_scenario(stack, monkeypatch, model_dir, batches=10, changed_from=6)

    # When the alarm starts a retrain
    result = run_retrain(scenario.alarm_message or {})

    # Then it is refused with each window's error, recorded and announced, not crashed
    record = decision_record(stack)
    assert result["decisions"][0]["decision"] == record["decision"] == "refused"
    failed = "fitting failed: InvalidParameterError: The 'C' parameter of LogisticRegression must be"
    assert record["reason"].startswith(f"no training window could be fitted: whole window: {failed}")
    assert f"since degradation: {failed}" in record["reason"]
    assert len(announcements(scenario)) == 1


def alarm_message(scenario: Scenario, state_change_time: datetime) -> dict[str, Any]:
    return {
        "AlarmName": json.loads(scenario.retrain_env["ALARM_NAMES"])["QualityAlarm"],
        "NewStateValue": "ALARM",
        "StateChangeTime": state_change_time.isoformat(),
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:x",
    }


def test_a_repeated_delivery_of_an_alarm_message_retrains_once(stack, monkeypatch):
    # Given two batches (600 labeled rows: each retrain is a quick refusal) and one ALARM transition
    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=2, changed_from=None)
    changed = datetime.now(UTC).replace(microsecond=0)
    message = alarm_message(scenario, changed)

    # When SNS delivers its message twice (two invocations, each with its own request id)
    first, second = run_retrain(message), run_retrain(message)

    # Then one retrain was decided, recorded and announced; the second delivery says why it did nothing
    assert [d["decision"] for d in first["decisions"]] == ["refused"] and second["decisions"] == []
    (why,) = second["skipped"]
    assert f"entered ALARM at {changed.isoformat()}, a transition already retrained on" in why
    assert len(stack.keys("models/decisions/")) == 1
    assert len(announcements(scenario)) == 1
    # and the alarm's next transition to ALARM retrains again
    third = run_retrain(alarm_message(scenario, changed + timedelta(hours=3)))
    assert len(third["decisions"]) == 1 and len(stack.keys("models/decisions/")) == 2


def test_a_retrain_that_raised_is_retried_and_a_delivery_after_the_decision_is_not(stack, monkeypatch):
    # Given an ALARM transition, and AWS trouble: the actuals table is gone
    from tests.template_resources import create_table

    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=2, changed_from=None)
    message = alarm_message(scenario, datetime.now(UTC).replace(microsecond=0))
    stack.dynamodb.delete_table(TableName=stack.actuals_table)

    # When the first attempt raises (so Lambda retries it), the table is back for the retry,
    with pytest.raises(Exception, match="ResourceNotFound|non-existent table"):
        run_retrain(message)
    create_table(stack.dynamodb, "ActualsTable", stack.actuals_table)
    retried = run_retrain(message)
    # and SNS then delivers the same message once more
    repeated = run_retrain(message)

    # Then the retry retrained (refused: the new table holds no labels) and the delivery did not
    assert [d["decision"] for d in retried["decisions"]] == ["refused"]
    assert "only 0 labeled rows" in retried["decisions"][0]["reason"]
    assert repeated["decisions"] == [] and "already retrained on" in repeated["skipped"][0]
    assert len(stack.keys("models/decisions/")) == 1


# -- the window, read a chunk at a time -------------------------------------------------------

WINDOW_ROWS = 300
ROW_GROUP_ROWS = 15  # Parquet: chunks of 37 rows take two row groups


def window_batch(index: int, suffix: str) -> tuple[bytes, pd.DataFrame, dict[str, Any]]:
    """A batch of WINDOW_ROWS rows with rows validation rejects (not a number, an id repeated
    from an earlier chunk, a missing id), an accepted missing value, labels for four rows in
    five and an unknown label; the file's bytes, the rows as written, and the labels."""
    frame = churn_frame(WINDOW_ROWS, seed=200 + index, id_prefix=f"w{index}").astype(
        {"tenure_months": object}
    )
    frame.loc[10, "tenure_months"] = "soon"
    frame.loc[200, "record_id"] = frame.loc[5, "record_id"]
    frame.loc[120, "record_id"] = None
    frame.loc[60, "monthly_charges"] = np.nan
    labels: dict[str, Any] = {
        record_id: int(churned)
        for position, (record_id, churned) in enumerate(
            zip(frame["record_id"], frame["churned"], strict=True)
        )
        if position % 5 and record_id is not None
    }
    labels[frame.loc[150, "record_id"]] = "maybe"
    rows = frame.drop(columns="churned")
    if suffix == ".csv.gz":
        body = gzip.compress(rows.to_csv(index=False).encode())
    elif suffix == ".jsonl":
        records = [
            {name: value for name, value in record.items() if not pd.isna(value)}
            for record in rows.to_dict("records")
        ]
        for record in records[:50]:
            record.pop("plan")  # a feature first seen in the second chunk of 37 rows
        body = ("\n".join(json.dumps(record) for record in records) + "\n").encode()
        frame.loc[:49, "plan"] = np.nan
    else:
        typed = rows.assign(tenure_months=rows["tenure_months"].replace("soon", "inf").astype(float))
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "batch.parquet"
            offsets = list(range(0, WINDOW_ROWS, ROW_GROUP_ROWS))
            fastparquet.write(str(path), typed, row_group_offsets=offsets, write_index=False)
            body = path.read_bytes()
    return body, frame, labels


def test_the_window_read_in_chunks_holds_each_batchs_valid_labeled_rows(stack, monkeypatch):
    # Given three batches scored by the batch monitor: gzip CSV, JSONL and Parquet, each
    # with invalid, repeated, unlabeled and missing values
    from modelwatch.batch_files import CHUNK_ROWS
    from modelwatch.config import RetrainConfig
    from modelwatch.retraining import gather_labeled_window

    monkeypatch.setenv("MODEL_DIR", str(stack.model_dir))
    monitor = load_handler("batch_monitor")
    now = datetime.now(UTC).replace(microsecond=0)
    expected_features, expected_target, expected_times = [], [], []
    for index, suffix in enumerate((".csv.gz", ".jsonl", ".parquet")):
        body, frame, labels = window_batch(index, suffix)
        batch_time = now - timedelta(hours=3 - index)
        stack.put_actuals(labels)
        key = f"incoming/window-{index}{suffix}"
        version = stack.s3.put_object(
            Bucket=BUCKET, Key=key, Body=body, Metadata={"batch-time": batch_time.isoformat()}
        )["VersionId"]
        event = s3_event(key)
        event["Records"][0]["s3"]["object"]["versionId"] = version
        monitor.lambda_handler(event, LambdaContext.of("BatchMonitorFunction"))
        assert stack.report(key)["status"] == "ok"
        # The rows a whole read keeps, computed here with pandas: valid (a number, an id,
        # the id's first row) and labeled with one of the model's classes
        valid = frame.index.difference([10, 120, 200])
        kept = frame.loc[valid]
        kept = kept[[labels.get(record_id) in (0, 1) for record_id in kept["record_id"]]]
        expected_features.append(kept[FEATURES])
        expected_target.extend(labels[record_id] for record_id in kept["record_id"])
        expected_times.extend([np.datetime64(batch_time.replace(tzinfo=None), "ns")] * len(kept))
    expected = pd.concat(expected_features, ignore_index=True).astype(
        {"tenure_months": float, "monthly_charges": float, "plan": object}
    )
    config = RetrainConfig(
        model_dir=stack.model_dir,
        actuals_table=stack.actuals_table,
        ledger_table=stack.ledger_table,
        bucket=BUCKET,
        alert_topic_arn="",
    )
    metadata = load_bundle(stack.model_dir).metadata

    # When the window is gathered in chunks of 37 rows, and in one chunk a batch
    windows = [
        gather_labeled_window(
            s3=stack.s3,
            dynamodb=stack.dynamodb,
            config=config,
            metadata=metadata,
            now=now,
            chunk_rows=chunk_rows,
        )
        for chunk_rows in (37, CHUNK_ROWS)
    ]

    # Then both hold exactly those rows, in batch and file order, with their labels and event times
    for window in windows:
        assert window.skipped == []
        assert [(batch.key, batch.rows) for batch in window.batches] == [
            (f"incoming/window-{index}{suffix}", WINDOW_ROWS - 3)
            for index, suffix in enumerate((".csv.gz", ".jsonl", ".parquet"))
        ]
        assert sum(batch.labeled_rows for batch in window.batches) == len(expected) > 600
        pd.testing.assert_frame_equal(window.features, expected)
        np.testing.assert_array_equal(window.target, np.asarray(expected_target))
        np.testing.assert_array_equal(window.event_times, np.asarray(expected_times, dtype="datetime64[ns]"))
    # (the JSONL batch's first rows, before its plan column first appears, have no plan)
    jsonl_start = windows[0].batches[0].labeled_rows
    assert windows[0].features["plan"].iloc[jsonl_start : jsonl_start + 5].isna().all()


def test_a_failed_retry_counts_as_an_attempt_and_the_next_look_tries_again(stack, monkeypatch):
    # Given a deferred retrain whose next batch came, and AWS trouble: the actuals table is gone
    from tests.template_resources import create_table

    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=7, changed_from=5, held_back=1)
    set_quality_alarm(scenario, "ALARM")
    run_retrain(scenario.alarm_message)
    scenario.later[0]()
    stack.dynamodb.delete_table(TableName=stack.actuals_table)

    # When the schedule's retry raises (Lambda retries it, then the dead-letter queue keeps it)
    with pytest.raises(Exception, match="ResourceNotFound|non-existent table"):
        run_schedule("schedule-1")

    # Then nothing was recorded, the claim is gone and the attempt is counted (so retries that
    # keep failing end), and the next look retries: attempt 2 (refused: the new table is empty)
    assert [r["decision"] for r in decision_records(stack)] == ["deferred"]
    item = deferral_item(stack)
    assert item is not None and item["attempts"] == {"N": "1"} and "claimed_by" not in item
    create_table(stack.dynamodb, "ActualsTable", stack.actuals_table)
    looked = run_schedule("schedule-2")
    assert looked is not None and looked["outcome"] == "retried"
    assert looked["decision"]["decision"] == "refused"
    second = decision_records(stack)[1]
    assert second["trigger"]["deferred_attempt"] == 2
    assert deferral_item(stack) is None  # a decision that is no deferral ends it


def test_another_alarms_decision_leaves_a_deferral_of_quality_alarm_alone(stack, monkeypatch):
    # Given RetrainOnAlarm naming QualityAlarm and DriftAlarm, and QualityAlarm's retrain deferred
    scenario = build_scenario(stack, monkeypatch, stack.model_dir, batches=7, changed_from=5, held_back=1)
    monkeypatch.setenv("RETRAIN_ON_ALARM", "QualityAlarm,DriftAlarm")
    set_quality_alarm(scenario, "ALARM")
    run_retrain(scenario.alarm_message)
    assert deferral_item(stack) is not None

    # When DriftAlarm fires with its degradation from the first batch on (all rows, so no deferral)
    drift_message = {
        **alarm_message(scenario, scenario.period_starts[0] + timedelta(hours=1)),
        "AlarmName": json.loads(scenario.retrain_env["ALARM_NAMES"])["DriftAlarm"],
    }
    decided = run_retrain(drift_message)

    # Then its decision stands on its own, and QualityAlarm's deferral is still there
    assert [d["decision"] for d in decided["decisions"]] == ["not_better"]
    assert deferral_item(stack) is not None
