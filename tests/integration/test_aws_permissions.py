"""The batch monitor and the actuals loader are granted exactly the AWS actions they use.

Each function runs its paths against moto with every AWS request recorded (tests/aws_calls.py);
the requests are compared with the function's policy in template.yaml, both ways: a request
no statement allows would fail in AWS (moto does not enforce IAM), and a statement no
request needed is access nobody reviews. (The alert notifier's test is with its others,
in test_alert_notifier.py.)
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from tests.aws_calls import Grant, policy_grants, recorded_aws_calls, ungranted, unused
from tests.integration.conftest import BUCKET, Stack, load_handler, s3_event
from tests.lambda_context import LambdaContext
from tests.model_fixtures import churn_frame

REGION = "us-east-1"  # the stack fixture's


def resource_names(stack: Stack) -> dict[str, str]:
    return {
        "IngestBucket": BUCKET,
        "ActualsTable": stack.actuals_table,
        "BatchLedgerTable": stack.ledger_table,
        "PredictionLogTable": stack.prediction_log_table,
    }


def uploaded(stack: Stack, key: str, body: bytes, event_name: str = "batch-monitor-s3-put") -> dict:
    """A new version of the object, and the event S3 sends for it: on the versioned bucket
    the event names the version."""
    version = stack.s3.put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]
    event = s3_event(key, event_name)
    event["Records"][0]["s3"]["object"]["versionId"] = version
    return event


def test_batch_monitor_is_granted_exactly_the_aws_actions_its_paths_use(stack):
    # Given a batch half of whose rows have actuals, in the versioned bucket, and the event
    # S3 sends for it (naming the version)
    frame = churn_frame(200, seed=31, id_prefix="p")
    stack.put_actuals(dict(zip(frame["record_id"][:100], frame["churned"][:100].astype(int), strict=True)))
    key = "incoming/2026/11/26/permissions.csv"
    body = frame.drop(columns="churned").to_csv(index=False).encode()
    event = uploaded(stack, key, body)
    handler = load_handler("batch_monitor")

    with recorded_aws_calls() as calls:
        # When it scores the batch (read, ledger claim, actuals, results, publish mark, metrics),
        handler.lambda_handler(event, LambdaContext.of("BatchMonitorFunction"))
        # gets the same event again (S3 delivers at least once), then the same bytes as a
        # new version (a duplicate),
        handler.lambda_handler(event, LambdaContext.of("BatchMonitorFunction"))
        handler.lambda_handler(uploaded(stack, key, body), LambdaContext.of("BatchMonitorFunction"))
        # and meets AWS trouble on another batch (the actuals table gone), which raises so
        # Lambda retries
        stack.dynamodb.delete_table(TableName=stack.actuals_table)
        changed = churn_frame(50, seed=32, id_prefix="q").drop(columns="churned").to_csv(index=False)
        with pytest.raises(ClientError, match="ResourceNotFoundException"):
            handler.lambda_handler(
                uploaded(stack, key, changed.encode()), LambdaContext.of("BatchMonitorFunction")
            )

    # Then every request is allowed by the function's policy, and every statement was needed,
    assert stack.report(key)["status"] == "ok"
    grants = policy_grants("BatchMonitorFunction", resource_names(stack), REGION)
    assert ungranted(calls, grants, REGION) == []
    # except these, each granted for a case these paths cannot show:
    assert unused(calls, grants, REGION) == [
        # An event without a version (the sample events in events/, an unversioned bucket)
        # is read with GetObject; S3 names the version for this template's versioned bucket.
        Grant("s3:GetObject", f"arn:aws:s3:::{BUCKET}/incoming/*"),
        # Not a call: without ListBucket, S3 answers a read of a batch deleted before it was
        # read with 403 instead of 404, so it would fail instead of being a rejected report;
        # moto does not enforce IAM.
        Grant("s3:ListBucket", f"arn:aws:s3:::{BUCKET}"),
    ]


def test_actuals_loader_is_granted_exactly_the_aws_actions_it_uses(stack):
    # Given an actuals file with one label the model does not know (published as UnknownLabels)
    key = "actuals/2026/11/26/actuals.csv"
    event = uploaded(stack, key, b"record_id,churned\na-1,1\na-2,0\na-3,maybe\n", "actuals-loader-s3-put")
    handler = load_handler("actuals_loader")

    # When the loader loads it
    with recorded_aws_calls() as calls:
        result = handler.lambda_handler(event, LambdaContext.of("ActualsLoaderFunction"))

    # Then every request is allowed by the function's policy (which grants s3:GetObject, not
    # s3:GetObjectVersion: the loader reads the object the event names, whichever its version),
    # and every statement was needed
    assert result["files"][0]["written"] == 3
    grants = policy_grants("ActualsLoaderFunction", resource_names(stack), REGION)
    assert ungranted(calls, grants, REGION) == []
    assert unused(calls, grants, REGION) == []


def test_label_join_is_granted_exactly_the_aws_actions_it_uses(stack):
    # Given a batch scored without its labels, then its labels written to the actuals table
    from tests.integration.test_label_join import stream_event

    frame = churn_frame(120, seed=33, id_prefix="j")
    key = "incoming/2026/11/26/late.csv"
    event = uploaded(stack, key, frame.drop(columns="churned").to_csv(index=False).encode())
    load_handler("batch_monitor").lambda_handler(event, LambdaContext.of("BatchMonitorFunction"))
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    stack.put_actuals(labels)
    handler = load_handler("label_join")

    # When the join scores them (and meets the same labels again)
    with recorded_aws_calls() as calls:
        handler.lambda_handler(stream_event(list(labels)), LambdaContext.of("LabelJoinFunction"))
        handler.lambda_handler(stream_event(list(labels)), LambdaContext.of("LabelJoinFunction"))

    # Then every request is allowed, and every statement was needed
    assert stack.report(key)["labeled_rows"] == 120
    grants = policy_grants("LabelJoinFunction", resource_names(stack), REGION)
    assert ungranted(calls, grants, REGION) == []
    # except the ones Lambda itself uses with the function's role, and ListBucket (a
    # missing report reads as 404 instead of 403; moto does not enforce IAM):
    stream = f"arn:aws:dynamodb:{REGION}:123456789012:table/{stack.actuals_table}/stream/*"
    assert unused(calls, grants, REGION) == [
        *(
            Grant(action, stream)
            for action in (
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            )
        ),
        Grant("s3:ListBucket", f"arn:aws:s3:::{BUCKET}"),
        Grant("sqs:SendMessage", f"arn:aws:sqs:{REGION}:123456789012:*"),
    ]


def test_retrain_is_granted_exactly_the_aws_actions_it_uses(stack, monkeypatch):
    # Given ten batches, the newest four of a changed relation, and the alarm they set off
    from tests.integration.test_retraining import build_scenario, run_retrain

    # (AutoPromote on: the statements it grants are the ones a promotion needs)
    scenario = build_scenario(
        stack, monkeypatch, stack.model_dir, batches=10, changed_from=6, auto_promote=True
    )

    # When the retrain function writes a candidate, promotes it, records the decision and announces
    # it; then, on a later transition whose change is all in the newest batch, defers, and its
    # hourly schedule looks at the deferral (the alarm in ALARM, no new labels yet)
    from tests.integration.test_retraining import alarm_message, run_schedule, set_quality_alarm

    set_quality_alarm(scenario, "ALARM")
    later_transition = alarm_message(scenario, scenario.period_starts[9] + timedelta(hours=1))
    with recorded_aws_calls() as calls:
        result = run_retrain(scenario.alarm_message or {})
        # (the whole window's challenger learned some of batches 6-8: no improvement is enough
        # here, so the decision rests on the newest batch's change, which nothing learned yet)
        monkeypatch.setenv("RETRAIN_MIN_IMPROVEMENT", "1")
        deferred = run_retrain(later_transition)
        looked = run_schedule()

    # Then every request is allowed, and every statement was needed
    assert result["decisions"][0]["decision"] == "candidate" and result["decisions"][0]["promoted"]
    assert deferred["decisions"][0]["decision"] == "deferred"
    assert looked is not None and looked["outcome"] == "waiting"
    names = {
        **resource_names(stack),
        "AlertTopic": scenario.topic_arn,
        "AutoPromote": "true",
        "AWS::StackName": "modelwatch-test",
    }
    grants = policy_grants("RetrainFunction", names, REGION)
    assert ungranted(calls, grants, REGION) == []
    # except KMS, which SNS uses on the publisher's behalf (no request of the code's own):
    assert unused(calls, grants, REGION) == [
        Grant(action, f"arn:aws:kms:{REGION}:123456789012:key/*")
        for action in ("kms:Decrypt", "kms:GenerateDataKey")
    ]
