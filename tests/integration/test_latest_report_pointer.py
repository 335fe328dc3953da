"""The batch monitor's results/latest.json lets an alert link the newest report with one GET."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from modelwatch.alerts.context import latest_report_key


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="reports-bucket")
        yield client


def test_the_pointer_names_the_report(s3):
    s3.put_object(Bucket="reports-bucket", Key="results/a.csv/report.json", Body=b"{}")
    s3.put_object(
        Bucket="reports-bucket",
        Key="results/latest.json",
        Body=json.dumps({"key": "incoming/a.csv", "report": "results/a.csv/report.json"}),
    )

    assert latest_report_key(s3, "reports-bucket", "results/") == "results/a.csv/report.json"


@pytest.mark.parametrize("pointer", [None, b"not json", json.dumps({"report": "elsewhere/x.json"}).encode()])
def test_without_a_usable_pointer_no_report_is_named(s3, pointer):
    # Reports exist, but only the pointer says which is newest: the alert links the prefix instead.
    s3.put_object(Bucket="reports-bucket", Key="results/a.csv/report.json", Body=b"{}")
    if pointer is not None:
        s3.put_object(Bucket="reports-bucket", Key="results/latest.json", Body=pointer)

    assert latest_report_key(s3, "reports-bucket", "results/") is None


def test_an_s3_failure_other_than_a_missing_pointer_is_raised(s3):
    # The notifier logs it as context left out, rather than silently linking the prefix.
    with pytest.raises(ClientError, match="NoSuchBucket"):
        latest_report_key(s3, "no-such-bucket", "results/")
