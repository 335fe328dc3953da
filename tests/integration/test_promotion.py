"""Promotion and rollback against moto's S3 and Lambda (modelwatch.promotion, the CLI), and the
batch monitor's ChampionMismatch when the layer's model is not the promoted champion."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from modelwatch.cli.main import main
from modelwatch.model_bundle import load_bundle
from modelwatch.promotion import (
    CHAMPION_KEY,
    Deployment,
    Promoter,
    PromotionConflict,
    PromotionError,
    functions_with_layer,
)
from tests.integration.conftest import BUCKET, load_handler, s3_event
from tests.lambda_context import LambdaContext
from tests.model_fixtures import churn_frame

MODEL_LAYER = "modelwatch-test-model"
RUNTIME_LAYER = "modelwatch-test-runtime"
FUNCTIONS = ("modelwatch-test-BatchMonitorFunction", "modelwatch-test-LabelJoinFunction")
OTHER_FUNCTION = "modelwatch-test-AlertNotifierFunction"  # no model layer


def layer_zip(directory: Path | None) -> bytes:
    """A layer zip as `sam build` makes the model layer: the directory under model/."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(directory.iterdir()) if directory else []:
            archive.write(path, f"model/{path.name}")
        if directory is None:
            archive.writestr("python/placeholder.txt", "runtime")
    return buffer.getvalue()


def deployed(model_dir: Path, functions: tuple[str, ...] = FUNCTIONS) -> dict[str, str]:
    """The stack's layers (version 1) and functions, as `sam deploy` leaves them."""
    lambda_client = boto3.client("lambda")
    role = boto3.client("iam").create_role(
        RoleName="function-role",
        AssumeRolePolicyDocument=json.dumps(
            {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]}
        ),
    )["Role"]["Arn"]
    arns = {}
    for name, content in ((RUNTIME_LAYER, layer_zip(None)), (MODEL_LAYER, layer_zip(model_dir))):
        arns[name] = lambda_client.publish_layer_version(
            LayerName=name,
            Content={"ZipFile": content},
            CompatibleRuntimes=["python3.13"],
            CompatibleArchitectures=["arm64"],
        )["LayerVersionArn"]
    for function in (*functions, OTHER_FUNCTION):
        layers = [arns[RUNTIME_LAYER]] + ([arns[MODEL_LAYER]] if function != OTHER_FUNCTION else [])
        lambda_client.create_function(
            FunctionName=function,
            Runtime="python3.13",
            Role=role,
            Handler="app.lambda_handler",
            Code={"ZipFile": layer_zip(None)},
            Layers=layers,
        )
    return arns


def write_candidate(stack: Any, model_dir: Path, version: str, decision: str = "candidate") -> dict[str, Any]:
    """A model directory under models/<version>/ as retraining writes a candidate's (the test model's
    files, its version changed), with the comparison that made it one."""
    metadata = json.loads((model_dir / "metadata.json").read_text())
    for path in model_dir.iterdir():
        if path.name != "metadata.json":
            stack.s3.put_object(Bucket=BUCKET, Key=f"models/{version}/{path.name}", Body=path.read_bytes())
    comparison = {
        "decision": decision,
        "model_name": metadata["name"],
        "champion_version": metadata["version"],
        "challenger_version": version,
        "quality_metric": "ErrorRate",
        "holdout": {"rows": 300},
        "champion_metrics": {"ErrorRate": 0.8},
        "challenger_metrics": {"ErrorRate": 0.3},
        "record_uri": f"s3://{BUCKET}/models/decisions/x-{decision}.json",
    }
    stack.s3.put_object(Bucket=BUCKET, Key=f"models/{version}/comparison.json", Body=json.dumps(comparison))
    metadata["version"] = version
    stack.s3.put_object(Bucket=BUCKET, Key=f"models/{version}/metadata.json", Body=json.dumps(metadata))
    return comparison


def promoter(**deployment: Any) -> Promoter:
    settings = {"bucket": BUCKET, "layer_name": MODEL_LAYER, "function_names": FUNCTIONS} | deployment
    return Promoter(
        Deployment(**settings),
        s3=boto3.client("s3"),
        lambda_client=boto3.client("lambda"),
        wait_delay_seconds=1,
    )


def model_layers() -> dict[str, list[str]]:
    lambda_client = boto3.client("lambda")
    found = {}
    for function in (*FUNCTIONS, OTHER_FUNCTION):
        layers = lambda_client.get_function_configuration(FunctionName=function).get("Layers", [])
        found[function] = [layer["Arn"] for layer in layers]
    return found


def pointer(stack: Any) -> dict[str, Any]:
    return json.loads(stack.read(CHAMPION_KEY))


def test_promote_publishes_the_candidate_as_a_layer_version_switches_every_function_and_records_it(
    stack, tmp_path
):
    # Given the deployed stack serving the test model (version "test"), and a candidate
    arns = deployed(stack.model_dir)
    comparison = write_candidate(stack, stack.model_dir, "v2")

    # When it is promoted
    record = promoter().promote("v2", by="cli (someone)")

    # Then a second version of the model layer holds the candidate's directory under model/
    lambda_client = boto3.client("lambda")
    published = lambda_client.get_layer_version(LayerName=MODEL_LAYER, VersionNumber=2)
    assert record["layer_version_arn"] == published["LayerVersionArn"] != arns[MODEL_LAYER]
    assert published["CompatibleRuntimes"] == ["python3.13"]
    assert published["CompatibleArchitectures"] == ["arm64"]
    with zipfile.ZipFile(io.BytesIO(stack.read("models/v2/layer.zip"))) as archive:
        archive.extractall(tmp_path / "layer")
        names = sorted(archive.namelist())
    assert names == sorted(
        f"model/{name}" for name in ("comparison.json", *(p.name for p in stack.model_dir.iterdir()))
    )
    assert load_bundle(tmp_path / "layer" / "model").metadata.version == "v2"

    # and every function with the model layer now has it, its runtime layer kept; others untouched
    assert model_layers() == {
        **{function: [arns[RUNTIME_LAYER], record["layer_version_arn"]] for function in FUNCTIONS},
        OTHER_FUNCTION: [arns[RUNTIME_LAYER]],
    }

    # and the record says when, by whom, from which to which version, and the holdout scores
    (key,) = stack.keys("models/promotions/")
    assert key.startswith("models/promotions/") and key.endswith("-promoted-v2.json")
    stored = json.loads(stack.read(key))
    assert stored == {k: v for k, v in record.items() if k != "record_uri"}
    assert (stored["event"], stored["by"], stored["from_version"], stored["to_version"]) == (
        "promoted",
        "cli (someone)",
        "test",
        "v2",
    )
    assert stored["previous_layer_version_arn"] == arns[MODEL_LAYER]
    assert stored["holdout"] == {
        "rows": 300,
        "champion": comparison["champion_metrics"],
        "challenger": comparison["challenger_metrics"],
    }

    # and the pointer names the champion and what a rollback returns to
    assert pointer(stack) | {"since": None} == {
        "model_name": "churn-test",
        "version": "v2",
        "layer_version_arn": record["layer_version_arn"],
        "since": None,
        "record": key,
        "earlier": [{"version": "test", "layer_version_arn": arns[MODEL_LAYER]}],
    }


def test_rollback_walks_back_through_the_earlier_champions_and_is_recorded(stack):
    arns = deployed(stack.model_dir)
    write_candidate(stack, stack.model_dir, "v2")
    write_candidate(stack, stack.model_dir, "v3")
    v2 = promoter().promote("v2", by="a")["layer_version_arn"]
    v3 = promoter().promote("v3", by="b")["layer_version_arn"]

    first = promoter().rollback(by="c")
    assert (first["event"], first["from_version"], first["to_version"]) == ("rolled_back", "v3", "v2")
    assert (first["layer_version_arn"], first["previous_layer_version_arn"]) == (v2, v3)
    assert model_layers()[FUNCTIONS[0]][-1] == v2 and pointer(stack)["version"] == "v2"
    second = promoter().rollback(by="c")
    assert (second["from_version"], second["to_version"]) == ("v2", "test")
    assert all(layers[-1] == arns[MODEL_LAYER] for f, layers in model_layers().items() if f in FUNCTIONS)
    # v2's comparison measured "test" against it: the scores of the version returned to
    assert second["holdout"] == {
        "rows": 300,
        "champion": {"ErrorRate": 0.3},
        "challenger": {"ErrorRate": 0.8},
    }

    with pytest.raises(PromotionError, match="nothing to roll back to: .* names no earlier champion"):
        promoter().rollback(by="c")
    events = [json.loads(stack.read(key))["event"] for key in stack.keys("models/promotions/")]
    assert events == ["promoted", "promoted", "rolled_back", "rolled_back"]


def test_promotion_refuses_what_is_no_candidate_with_a_clear_error(stack):
    deployed(stack.model_dir)
    write_candidate(stack, stack.model_dir, "worse", decision="not_better")
    write_candidate(stack, stack.model_dir, "v2")
    stack.s3.delete_object(Bucket=BUCKET, Key="models/v2/metadata.json")

    with pytest.raises(PromotionError, match=r"no model version 'nope': s3://.*/models/nope/ is empty"):
        promoter().promote("nope", by="x")
    with pytest.raises(
        PromotionError, match="worse is not a candidate: its comparison.json says 'not_better'"
    ):
        promoter().promote("worse", by="x")
    with pytest.raises(PromotionError, match="no complete candidate directory: metadata.json missing"):
        promoter().promote("v2", by="x")
    with pytest.raises(PromotionError, match="rollback .*|nothing to roll back to: no promotion is recorded"):
        promoter().rollback(by="x")
    # nothing was switched or recorded
    assert stack.keys("models/promotions/") == [] and stack.keys(CHAMPION_KEY) == []
    assert (
        boto3.client("lambda").list_layer_versions(LayerName=MODEL_LAYER)["LayerVersions"][0]["Version"] == 1
    )


def test_an_interrupted_promotion_is_completed_by_promoting_again(stack):
    # Given a promotion that wrote the pointer, switched one function and then failed on the
    # next (a function list naming one without the model layer)
    arns = deployed(stack.model_dir)
    write_candidate(stack, stack.model_dir, "v2")
    with pytest.raises(PromotionError, match="has no version of the model layer"):
        promoter(function_names=(FUNCTIONS[0], OTHER_FUNCTION, FUNCTIONS[1])).promote("v2", by="first try")
    new_layer = pointer(stack)["layer_version_arn"]
    assert [model_layers()[function][-1] for function in FUNCTIONS] == [new_layer, arns[MODEL_LAYER]]
    assert stack.keys("models/promotions/") == []  # not recorded: it did not finish

    # When it is promoted again, Then the rest is switched and the promotion recorded
    record = promoter().promote("v2", by="second try")
    assert [model_layers()[function][-1] for function in FUNCTIONS] == [new_layer, new_layer]
    assert (record["from_version"], record["to_version"], record["by"]) == ("test", "v2", "second try")
    assert record["previous_layer_version_arn"] == arns[MODEL_LAYER]
    assert stack.keys("models/promotions/") == [pointer(stack)["record"]]
    # and once complete, promoting the champion again is refused
    with pytest.raises(PromotionError, match="v2 is the champion already"):
        promoter().promote("v2", by="third try")


def test_rollback_to_a_deleted_layer_version_is_refused_before_anything_changes(stack):
    deployed(stack.model_dir)
    write_candidate(stack, stack.model_dir, "v2")
    promoter().promote("v2", by="x")
    before = pointer(stack)
    boto3.client("lambda").delete_layer_version(LayerName=MODEL_LAYER, VersionNumber=1)
    with pytest.raises(PromotionError, match="cannot roll back to test: its layer version .*:1 is gone"):
        promoter().rollback(by="x")
    assert pointer(stack) == before


def test_a_function_without_the_model_layer_is_refused(stack):
    deployed(stack.model_dir)
    write_candidate(stack, stack.model_dir, "v2")
    with pytest.raises(PromotionError, match=f"function {OTHER_FUNCTION} has no version of the model layer"):
        promoter(function_names=(OTHER_FUNCTION,)).promote("v2", by="x")


def test_two_promoters_cannot_interleave_the_second_fails_before_switching(stack):
    # Given two candidates, and a second person who promotes v3 while this promotion of v2 runs
    # (between its read of models/champion.json and its conditional write of it)
    deployed(stack.model_dir)
    write_candidate(stack, stack.model_dir, "v2")
    write_candidate(stack, stack.model_dir, "v3")
    mine = promoter()
    interleaved = []

    def the_other_promotion(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == CHAMPION_KEY and not interleaved:
            interleaved.append(promoter().promote("v3", by="the other person"))

    mine.s3.meta.events.register("before-parameter-build.s3.PutObject", the_other_promotion)

    # When this promotion writes the pointer, Then it fails, saying why and what to do
    with pytest.raises(PromotionConflict, match="changed while this ran: someone else promoted"):
        mine.promote("v2", by="me")

    # and the other promotion stands: the pointer and every function say v3
    assert pointer(stack)["version"] == "v3"
    v3 = interleaved[0]["layer_version_arn"]
    assert all(layers[-1] == v3 for f, layers in model_layers().items() if f in FUNCTIONS)
    assert [key.rsplit("-", 1)[-1] for key in stack.keys("models/promotions/")] == ["v3.json"]


def test_the_cli_promotes_with_the_callers_identity_and_prints_the_champion(stack, capsys):
    arns = deployed(stack.model_dir)
    write_candidate(stack, stack.model_dir, "v2")
    assert functions_with_layer(boto3.client("lambda"), MODEL_LAYER) == FUNCTIONS

    # `model promote` finds the functions with the model layer itself
    assert main(["model", "promote", "--version", "v2", "--bucket", BUCKET, "--layer-name", MODEL_LAYER]) == 0
    printed = capsys.readouterr().out
    caller = boto3.client("sts").get_caller_identity()["Arn"]
    assert "promoted v2 (was test)" in printed and f"by cli ({caller})" in printed
    assert main(["model", "champion", "--bucket", BUCKET, "--layer-arn"]) == 0
    assert capsys.readouterr().out.strip() == pointer(stack)["layer_version_arn"] != arns[MODEL_LAYER]
    assert main(["model", "champion", "--bucket", BUCKET]) == 0
    listing = capsys.readouterr().out
    assert "Champion: v2 since" in listing and "Rollback returns to: test" in listing
    assert "promoted     test -> v2" in listing

    # and an unknown version is an error message, not a traceback
    assert main(["model", "promote", "--version", "v9", "--bucket", BUCKET, "--layer-name", MODEL_LAYER]) == 2
    assert "no model version 'v9'" in capsys.readouterr().err


def monitor_batch(stack: Any, name: str, handler: Any = None) -> dict[str, Any]:
    """A batch through the batch monitor: a cold start, or ``handler``'s warm sandbox."""
    frame = churn_frame(100, seed=41, id_prefix=name)
    stack.put_actuals(dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True)))
    key = f"incoming/{name}.csv"
    stack.s3.put_object(
        Bucket=BUCKET, Key=key, Body=frame.drop(columns="churned").to_csv(index=False).encode()
    )
    (handler or load_handler("batch_monitor")).lambda_handler(
        s3_event(key), LambdaContext.of("BatchMonitorFunction")
    )
    return stack.report(key)


def test_a_warm_batch_monitor_sees_a_promotion_made_after_it_started(stack):
    # Given a warm sandbox that scored a batch before any promotion
    warm = load_handler("batch_monitor")
    assert "ChampionMismatch" not in monitor_batch(stack, "before", warm)["metrics_published"]

    # When v2 is promoted but this function's switch does not happen (a failed promotion)
    stack.s3.put_object(
        Bucket=BUCKET, Key=CHAMPION_KEY, Body=json.dumps({"version": "v2", "layer_version_arn": "arn:x:2"})
    )

    # Then its next batch, in the same sandbox, reports that it serves another version
    report = monitor_batch(stack, "after", warm)
    assert any("but the promoted champion is v2" in note for note in report["notes"])
    assert stack.statistic("ChampionMismatch", ("Maximum",))["Maximum"] == 1.0


def test_a_model_that_is_not_the_promoted_champion_is_reported_and_published(stack):
    # Given a promotion of v2, and a deploy that put the built model ("test") back in the layer
    stack.s3.put_object(
        Bucket=BUCKET,
        Key=CHAMPION_KEY,
        Body=json.dumps(
            {
                "version": "v2",
                "layer_version_arn": "arn:aws:lambda:us-east-1:123456789012:layer:m:2",
                "since": "2026-12-01T00:00:00+00:00",
                "earlier": [],
            }
        ),
    )

    # When the batch monitor (a cold start) scores a batch
    report = monitor_batch(stack, "mismatch")

    # Then the report says which version scored it, which is the champion, and the fix
    assert report["model"]["version"] == "test"
    (note,) = [note for note in report["notes"] if "promoted champion" in note]
    assert "scored by model version test, but the promoted champion is v2" in note
    assert "ModelLayerVersionArn=arn:aws:lambda:us-east-1:123456789012:layer:m:2" in note
    # and ChampionMismatch = 1 goes to CloudWatch, for ChampionMismatchAlarm
    assert stack.statistic("ChampionMismatch", ("Maximum",))["Maximum"] == 1.0


def test_the_promoted_champion_publishes_no_mismatch(stack, tmp_path):
    stack.s3.put_object(Bucket=BUCKET, Key=CHAMPION_KEY, Body=json.dumps({"version": "test", "earlier": []}))
    report = monitor_batch(stack, "match")
    assert not [note for note in report["notes"] if "promoted champion" in note]
    assert stack.statistic("ChampionMismatch", ("Maximum",))["Maximum"] == 0.0


def test_an_unreadable_champion_pointer_is_a_mismatch_not_silence(stack):
    # Given a champion pointer that is not JSON (a hand edit, a truncated copy)
    stack.s3.put_object(Bucket=BUCKET, Key=CHAMPION_KEY, Body=b'{"version": "v2", "layer_ver')

    # When the batch monitor scores a batch
    report = monitor_batch(stack, "garbled")

    # Then it is scored, the note says the champion is unknown and what to check,
    (note,) = [note for note in report["notes"] if "promoted champion" in note]
    assert f"could not read the promoted champion from s3://{BUCKET}/{CHAMPION_KEY}" in note
    assert "model version test is the champion is unknown" in note and "s3:GetObject" in note
    # and ChampionMismatch = 1 fires the alarm rather than leaving it OK for want of data
    assert report["status"] == "ok"
    assert stack.statistic("ChampionMismatch", ("Maximum",))["Maximum"] == 1.0


def test_a_champion_pointer_s3_refuses_to_read_is_a_mismatch_mocked_access_denied(stack, monkeypatch):
    # moto does not enforce IAM in process: the refusal is mocked (the only mock here)
    stack.s3.put_object(Bucket=BUCKET, Key=CHAMPION_KEY, Body=json.dumps({"version": "test", "earlier": []}))
    refused = []

    def access_denied(s3: Any, bucket: str) -> Any:
        refused.append(bucket)
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")

    monkeypatch.setattr("modelwatch.monitor.read_champion_pointer", access_denied)

    report = monitor_batch(stack, "denied")

    (note,) = [note for note in report["notes"] if "promoted champion" in note]
    assert "AccessDenied" in note and "is unknown" in note
    assert stack.statistic("ChampionMismatch", ("Maximum",))["Maximum"] == 1.0
    assert refused == [BUCKET]


def test_before_any_promotion_nothing_about_the_champion_is_published(stack):
    report = monitor_batch(stack, "none")
    assert "ChampionMismatch" not in report["metrics_published"]
    assert stack.statistic("ChampionMismatch", ("Maximum",)) is None
