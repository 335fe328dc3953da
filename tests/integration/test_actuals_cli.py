"""`modelwatch actuals load` as a person runs it: a subprocess with no AWS settings, against
the embedded moto server the local cloud uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from modelwatch.local.moto_server import EmbeddedAws, start_moto_server
from tests.template_resources import create_table

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto_server():
    server = start_moto_server()
    yield server
    server.stop()


@pytest.fixture
def table(moto_server: EmbeddedAws) -> str:
    name = f"actuals-{uuid.uuid4().hex[:8]}"
    create_table(server_client(moto_server), "ActualsTable", name)
    return name


def server_client(server: EmbeddedAws):
    return boto3.client(
        "dynamodb",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def run_cli(*arguments: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The CLI without any AWS_* variable and with an empty home (no ~/.aws)."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment["HOME"] = str(home)
    environment["AWS_EC2_METADATA_DISABLED"] = "true"  # no instance to ask for credentials here
    return subprocess.run(
        [sys.executable, "-m", "modelwatch.cli.main", "actuals", "load", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_load_against_a_local_endpoint_needs_no_aws_settings(moto_server, table, tmp_path):
    path = tmp_path / "actuals.csv"
    path.write_text("record_id,actual\n" + "".join(f"c-{i},{i % 2}\n" for i in range(60)))

    endpoint = moto_server.endpoint_url
    completed = run_cli(str(path), "--table", table, "--endpoint-url", endpoint, home=tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert "upserted 60 actuals" in completed.stdout
    count = server_client(moto_server).scan(TableName=table, Select="COUNT")["Count"]
    assert count == 60


def test_missing_columns_name_the_columns_the_file_has(moto_server, table, tmp_path):
    path = tmp_path / "actuals.csv"
    path.write_text("id,label\nc-1,1\n")

    endpoint = moto_server.endpoint_url
    completed = run_cli(str(path), "--table", table, "--endpoint-url", endpoint, home=tmp_path)

    assert completed.returncode == 2
    assert "its columns are ['id', 'label']" in completed.stderr
    assert "--id-column and --target" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_unknown_labels_are_reported_with_the_model_dir(moto_server, table, tmp_path):
    metadata = {
        "name": "answers",
        "version": "1",
        "task": "classification",
        "model_file": "model.skops",
        "id_column": "record_id",
        "target": "answer",
        "features": [{"name": "x", "type": "numeric"}],
        "classes": ["no", "yes"],
        "positive_label": "yes",
    }
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    path = tmp_path / "answers.csv"
    path.write_text("record_id,answer\na-1,Yes\na-2,maybe\na-3,No\n")

    completed = run_cli(
        str(path),
        "--table",
        table,
        "--model-dir",
        str(tmp_path),
        "--endpoint-url",
        moto_server.endpoint_url,
        home=tmp_path,
    )

    assert completed.returncode == 0, completed.stderr
    assert "upserted 3 actuals" in completed.stdout
    assert "1 actuals match none of the model's classes ['no', 'yes']: {'maybe': 1}" in completed.stderr


def test_a_table_that_does_not_exist_is_a_user_error(moto_server, tmp_path):
    path = tmp_path / "actuals.csv"
    path.write_text("record_id,actual\nc-1,1\n")

    completed = run_cli(
        str(path), "--table", "no-such-table", "--endpoint-url", moto_server.endpoint_url, home=tmp_path
    )

    assert completed.returncode == 2
    assert "table 'no-such-table' does not exist" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [((), "no AWS region: pass --region"), (("--region", "eu-west-1"), "no AWS credentials found")],
    ids=["no-region", "no-credentials"],
)
def test_without_an_endpoint_missing_aws_settings_are_user_errors(tmp_path, arguments, message):
    path = tmp_path / "actuals.csv"
    path.write_text("record_id,actual\nc-1,1\n")

    completed = run_cli(str(path), "--table", "t", *arguments, home=tmp_path)

    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
