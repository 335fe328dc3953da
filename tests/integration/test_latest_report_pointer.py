"""The batch monitor's results/latest.json lets an alert link the newest report with one GET."""

import json

import boto3
import pytest
from moto import mock_aws

from modelwatch.alerts import find_latest_report


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="reports-bucket")
        yield client


def test_pointer_is_followed_without_listing(s3):
    s3.put_object(Bucket="reports-bucket", Key="results/a.csv/report.json", Body=b"{}")
    s3.put_object(
        Bucket="reports-bucket",
        Key="results/latest.json",
        Body=json.dumps({"report": "results/a.csv/report.json"}),
    )
    calls = []
    original = s3.list_objects_v2
    s3.list_objects_v2 = lambda **kwargs: calls.append(kwargs) or original(**kwargs)
    assert (
        find_latest_report(s3, "reports-bucket", "results/", max_keys=10).key == "results/a.csv/report.json"
    )
    assert calls == []


@pytest.mark.parametrize("pointer", [None, b"not json", json.dumps({"report": "elsewhere/x.json"}).encode()])
def test_without_a_usable_pointer_the_listing_finds_the_report(s3, pointer):
    s3.put_object(Bucket="reports-bucket", Key="results/a.csv/report.json", Body=b"{}")
    if pointer is not None:
        s3.put_object(Bucket="reports-bucket", Key="results/latest.json", Body=pointer)
    assert (
        find_latest_report(s3, "reports-bucket", "results/", max_keys=10).key == "results/a.csv/report.json"
    )
