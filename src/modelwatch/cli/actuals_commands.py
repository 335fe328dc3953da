"""`modelwatch actuals load`: upsert an actuals CSV into the actuals table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from modelwatch.errors import BatchRejected, UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    actuals = subparsers.add_parser("actuals", help="load ground truth into the actuals table")
    commands = actuals.add_subparsers(dest="actuals_command", required=True)
    load = commands.add_parser("load", help="upsert an actuals CSV (BatchWriteItem, 25 per request)")
    load.add_argument("file", type=Path, help="CSV (or .csv.gz) with the id and target columns")
    load.add_argument("--table", required=True, help="the actuals table name (stack output ActualsTableName)")
    load.add_argument("--model-dir", type=Path, help="read the id and target column names from metadata.json")
    load.add_argument("--id-column", default="record_id")
    load.add_argument("--target", default="actual", help="the label column (default: actual)")
    load.add_argument(
        "--endpoint-url", help="DynamoDB endpoint, e.g. the local cloud's http://127.0.0.1:PORT"
    )
    load.set_defaults(func=load_command)


def load_command(args: argparse.Namespace) -> int:
    # Imported here so `modelwatch --help` does not wait for boto3 and pandas.
    import boto3

    from modelwatch.actuals import RequestStats, read_actuals_file, write_actuals
    from modelwatch.aws import CLIENT_CONFIG

    id_column, target = args.id_column, args.target
    if args.model_dir:
        metadata = json.loads((args.model_dir / "metadata.json").read_text(encoding="utf-8"))
        id_column, target = metadata["id_column"], metadata["target"]
    if not args.file.is_file():
        raise UserError(f"{args.file} does not exist")
    try:
        records = read_actuals_file(args.file.read_bytes(), args.file.name, id_column, target)
    except BatchRejected as problem:
        raise UserError(problem.reason) from None
    dynamodb = boto3.client("dynamodb", endpoint_url=args.endpoint_url, config=CLIENT_CONFIG)
    stats = RequestStats()
    written = write_actuals(dynamodb, args.table, records, stats=stats)
    print(
        f"upserted {written} actuals into {args.table} ({stats.requests} BatchWriteItem requests, "
        f"{stats.retries} retries)"
    )
    return 0
