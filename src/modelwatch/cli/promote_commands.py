"""`modelwatch model promote / rollback / champion`: which model version the stack serves.

The same code as AutoPromote (modelwatch.promotion) against a deployed stack (its outputs
IngestBucketName and ModelLayerName) or the local cloud (``--endpoint-url``). The functions
switched are every function of the account whose layers include the model layer, unless
``--functions`` names them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from modelwatch.errors import UserError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bucket", required=True, help="the ingest bucket (stack output IngestBucketName)")
    parser.add_argument(
        "--layer-name", required=True, help="the model layer (stack output ModelLayerName: <stack>-model)"
    )
    parser.add_argument(
        "--functions",
        help="comma-separated names of the functions to switch (default: every one with the model layer)",
    )
    parser.add_argument("--topic-arn", default="", help="announce on this topic (stack output AlertTopicArn)")
    parser.add_argument("--endpoint-url", help="the local cloud's endpoint, e.g. http://127.0.0.1:4566")
    parser.add_argument("--region", help="AWS region (default: the AWS configuration's)")


def register(commands: argparse._SubParsersAction) -> None:
    promote = commands.add_parser(
        "promote",
        help="serve a retrained candidate: publish it as a model layer version and switch the functions",
        description="Zip s3://BUCKET/models/VERSION/ as a model layer version, switch every function with "
        "the model layer to it, write models/champion.json and a record under models/promotions/. The next "
        "batch is scored by it. Keep it through later deploys with --parameter-overrides "
        "ModelLayerVersionArn=$(modelwatch model champion ... --layer-arn).",
    )
    promote.add_argument(
        "--version", required=True, help="the candidate's version (its retrain announcement)"
    )
    _common(promote)
    promote.set_defaults(func=promote_command)

    rollback = commands.add_parser(
        "rollback",
        help="serve the champion before the current one again",
        description="Switch the functions back to the model layer version of the champion before, "
        "recorded under models/promotions/ like a promotion.",
    )
    _common(rollback)
    rollback.set_defaults(func=rollback_command)

    champion = commands.add_parser(
        "champion",
        help="print the promoted champion and the history of promotions and rollbacks",
        description="Print models/champion.json and every record under models/promotions/, oldest first.",
    )
    champion.add_argument("--bucket", required=True, help="the ingest bucket (stack output IngestBucketName)")
    champion.add_argument(
        "--layer-arn",
        action="store_true",
        help="print only the champion's layer version ARN (for sam deploy's ModelLayerVersionArn)",
    )
    champion.add_argument("--json", action="store_true", help="print the pointer and history as JSON")
    champion.add_argument("--endpoint-url", help="the local cloud's endpoint, e.g. http://127.0.0.1:4566")
    champion.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    champion.set_defaults(func=champion_command)


def _promoter(args: argparse.Namespace, functions: tuple[str, ...] = ()) -> Any:
    from modelwatch.cli.actuals_commands import aws_client
    from modelwatch.promotion import Deployment, Promoter

    lambda_client = aws_client("lambda", args.endpoint_url, args.region)
    if not functions:
        functions = _functions(args, lambda_client)
    return Promoter(
        Deployment(args.bucket, getattr(args, "layer_name", ""), functions, getattr(args, "topic_arn", "")),
        s3=aws_client("s3", args.endpoint_url, args.region),
        lambda_client=lambda_client,
        sns=aws_client("sns", args.endpoint_url, args.region),
    )


def _functions(args: argparse.Namespace, lambda_client: Any) -> tuple[str, ...]:
    if args.functions:
        return tuple(name.strip() for name in args.functions.split(",") if name.strip())
    from modelwatch.promotion import functions_with_layer

    found = functions_with_layer(lambda_client, args.layer_name)
    if not found:
        raise UserError(
            f"no function has a version of the layer {args.layer_name!r}: check --layer-name (stack output "
            "ModelLayerName) and --region, or name the functions with --functions"
        )
    return found


def _by(args: argparse.Namespace) -> str:
    """Who asked: the caller's identity in AWS; 'local' against a local endpoint."""
    if args.endpoint_url:
        return "cli (local)"
    from modelwatch.cli.actuals_commands import aws_client

    return f"cli ({aws_client('sts', None, args.region).get_caller_identity()['Arn']})"


def _run(action: Any) -> Any:
    from botocore.exceptions import WaiterError

    from modelwatch.cli.actuals_commands import aws_errors_as_user_errors
    from modelwatch.promotion import PromotionError

    try:
        return aws_errors_as_user_errors(action)
    except PromotionError as problem:
        raise UserError(str(problem)) from None
    except WaiterError as problem:
        raise UserError(f"a function did not finish updating: {problem}") from None


def promote_command(args: argparse.Namespace) -> int:
    from modelwatch.alerts.announcement import promotion_announcement

    record = _run(lambda: _promoter(args).promote(args.version, by=_by(args)))
    print(promotion_announcement(record))
    return 0


def rollback_command(args: argparse.Namespace) -> int:
    from modelwatch.alerts.announcement import promotion_announcement

    record = _run(lambda: _promoter(args).rollback(by=_by(args)))
    print(promotion_announcement(record))
    return 0


def champion_command(args: argparse.Namespace) -> int:
    from modelwatch.cli.actuals_commands import aws_client
    from modelwatch.promotion import Deployment, Promoter

    promoter = Promoter(
        Deployment(args.bucket, "", ()),
        s3=aws_client("s3", args.endpoint_url, args.region),
        lambda_client=None,
    )
    pointer, _ = _run(promoter.champion)
    if args.layer_arn:
        if pointer is None:
            raise UserError(
                f"nothing was promoted (s3://{args.bucket}/models/champion.json does not exist): "
                "deploy without ModelLayerVersionArn"
            )
        print(pointer["layer_version_arn"])
        return 0
    history = _run(promoter.history)
    if args.json:
        print(json.dumps({"champion": pointer, "history": history}, indent=2))
        return 0
    if pointer is None:
        print("No promotion yet: the functions serve the model the stack was deployed with.")
    else:
        print(f"Champion: {pointer['version']} since {pointer['since']}")
        print(f"Layer version: {pointer['layer_version_arn']}")
        earlier = ", ".join(str(entry["version"]) for entry in pointer.get("earlier", []))
        print(f"Rollback returns to: {earlier or 'nothing recorded'}")
    for record in history:
        print(
            f"{record['time']}  {record['event']:<11}  {record['from_version']} -> {record['to_version']}  "
            f"by {record['by']}"
        )
    return 0
