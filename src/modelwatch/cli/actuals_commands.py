"""`modelwatch actuals load`: upsert an actuals CSV into the actuals table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from modelwatch.errors import BatchRejected, ModelBundleError, UserError

T = TypeVar("T")

# What a local endpoint (the embedded moto server, LocalStack) gets when nothing is
# configured: it accepts any region and credentials, and a first run should just work.
LOCAL_REGION = "us-east-1"
LOCAL_ACCESS_KEY = LOCAL_SECRET_KEY = "local"


def register(subparsers: argparse._SubParsersAction) -> None:
    actuals = subparsers.add_parser("actuals", help="load ground truth into the actuals table")
    commands = actuals.add_subparsers(dest="actuals_command", required=True)
    load = commands.add_parser("load", help="upsert an actuals CSV (BatchWriteItem, 25 per request)")
    load.add_argument("file", type=Path, help="CSV (or .csv.gz) with the id and target columns")
    load.add_argument("--table", required=True, help="the actuals table name (stack output ActualsTableName)")
    load.add_argument(
        "--model-dir",
        type=Path,
        help="read the id and target columns and the classes (to count unknown labels) from metadata.json",
    )
    load.add_argument("--id-column", default="record_id")
    load.add_argument("--target", default="actual", help="the label column (default: actual)")
    load.add_argument(
        "--endpoint-url",
        help=f"DynamoDB endpoint, e.g. the local cloud's http://127.0.0.1:PORT (without AWS settings: "
        f"region {LOCAL_REGION}, dummy credentials)",
    )
    load.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    load.set_defaults(func=load_command)


def dynamodb_client(endpoint_url: str | None, region: str | None) -> Any:
    return aws_client("dynamodb", endpoint_url, region)


def aws_errors_as_user_errors(action: Callable[[], T]) -> T:
    """``action()``, with AWS refusing a request or being out of reach as a UserError that says
    which (the commands that work on a stack's resources share this)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return action()
    except ClientError as problem:
        error = problem.response.get("Error", {})
        raise UserError(
            f"AWS refused a request: {error.get('Code')}: {error.get('Message', problem)}"
        ) from None
    except BotoCoreError as problem:
        raise UserError(f"could not reach AWS: {problem}") from None


def aws_client(service: str, endpoint_url: str | None, region: str | None) -> Any:
    """A client of ``service``; a missing region or credentials is a UserError, except that a
    local endpoint gets LOCAL_REGION and dummy credentials when none are configured."""
    import boto3

    from modelwatch.aws import CLIENT_CONFIG

    session = boto3.session.Session(region_name=region)
    region = session.region_name
    access_key = secret_key = None
    if endpoint_url:
        region = region or LOCAL_REGION
        if session.get_credentials() is None:
            access_key, secret_key = LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY
    elif not region:
        raise UserError("no AWS region: pass --region, or set AWS_REGION (or a profile's region)")
    elif session.get_credentials() is None:
        raise UserError(
            "no AWS credentials found: configure them (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID), "
            "or pass --endpoint-url for a local endpoint"
        )
    # The service name is data here, which the boto3 stubs' per-service overloads cannot type.
    return session.client(  # type: ignore[call-overload]
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=CLIENT_CONFIG,
    )


def load_command(args: argparse.Namespace) -> int:
    # Imported here so `modelwatch --help` does not wait for boto3 and pandas.
    from botocore.exceptions import BotoCoreError, ClientError

    from modelwatch.actuals_loading import load_actuals_file
    from modelwatch.labels import LabelNormaliser

    id_column, target, labels, classes = args.id_column, args.target, None, None
    if args.model_dir:
        from modelwatch.model_bundle import load_metadata

        try:
            metadata = load_metadata(args.model_dir)
        except ModelBundleError as problem:
            raise UserError(str(problem)) from None
        id_column, target = metadata.id_column, metadata.target
        classes = list(metadata.classes) if metadata.task == "classification" else None
        labels = LabelNormaliser(classes)
    if not args.file.is_file():
        raise UserError(f"{args.file} does not exist")
    dynamodb = dynamodb_client(args.endpoint_url, args.region)
    where = args.endpoint_url or dynamodb.meta.region_name
    try:
        with args.file.open("rb") as stream:
            summary = load_actuals_file(
                stream, args.file.name, dynamodb=dynamodb, table=args.table, id_column=id_column,
                target=target, labels=labels,
            )  # fmt: skip
    except BatchRejected as problem:
        hint = (
            "; name the columns with --id-column and --target, or give the model's --model-dir"
            if problem.code == "missing_column"
            else ""
        )
        raise UserError(problem.reason + hint) from None
    except ClientError as problem:
        error = problem.response.get("Error", {})
        if error.get("Code") == "ResourceNotFoundException":
            raise UserError(f"table {args.table!r} does not exist in {where}: check --table") from None
        raise UserError(f"DynamoDB ({where}) refused the write: {error.get('Message', problem)}") from None
    except BotoCoreError as problem:  # no connection, expired credentials, ...
        raise UserError(f"could not write to DynamoDB ({where}): {problem}") from None
    print(
        f"upserted {summary.written} actuals into {args.table} ({summary.stats.requests} BatchWriteItem "
        f"requests, {summary.stats.retries} retries)"
    )
    unknown = summary.unknown_labels
    if unknown.rows:
        print(
            f"warning: {unknown.rows} actuals match none of the model's classes {classes}: "
            f"{unknown.examples} (label: rows); no batch will count them as labeled",
            file=sys.stderr,
        )
    return 0
