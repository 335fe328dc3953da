"""`modelwatch model retrain`: the retrain function's work, on demand, from a laptop or CI.

Runs modelwatch.retraining against a deployed stack (its outputs name the bucket, tables
and topic) or the local cloud (``--endpoint-url``): the same window, holdout, comparison,
candidate directory, decision record and announcement as an alarm would start.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from modelwatch.errors import ModelBundleError, UserError


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-11-30T08:00Z, got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def register(commands: argparse._SubParsersAction) -> None:
    retrain = commands.add_parser(
        "retrain",
        help="retrain a challenger on the recent labeled rows and compare it with the champion",
        description="Gather the labeled rows of the last --window-days, hold out the newest batches, fit "
        "clones of the champion on the whole window and on the rows since --since (default: the newest "
        "half of the training rows), and compare the best with the champion on the holdout. A challenger "
        "better by --min-improvement is written to s3://BUCKET/models/<version>/; every decision is "
        "recorded under models/decisions/ and announced on --topic-arn when given.",
    )
    retrain.add_argument("--model-dir", type=Path, default=Path("layers/model/artifact"), help="the champion")
    retrain.add_argument("--bucket", required=True, help="the ingest bucket (stack output IngestBucketName)")
    retrain.add_argument("--actuals-table", required=True, help="stack output ActualsTableName")
    retrain.add_argument("--ledger-table", required=True, help="stack output BatchLedgerTableName")
    retrain.add_argument(
        "--topic-arn", default="", help="announce on this topic (stack output AlertTopicArn)"
    )
    retrain.add_argument("--since", type=_moment, help="where the degradation began (ISO 8601)")
    retrain.add_argument("--window-days", type=int, default=14, help="RetrainWindowDays (default: 14)")
    retrain.add_argument(
        "--min-labeled-rows", type=int, default=1000, help="RetrainMinLabeledRows (default: 1000)"
    )
    retrain.add_argument(
        "--min-improvement", type=float, default=0.01, help="RetrainMinImprovement (default: 0.01)"
    )
    retrain.add_argument("--quality-metric", default="ErrorRate", help="QualityMetric (default: ErrorRate)")
    retrain.add_argument(
        "--quality-comparison",
        default="GreaterThanThreshold",
        help="QualityComparison; LessThan... means higher is better (default: GreaterThanThreshold)",
    )
    retrain.add_argument("--endpoint-url", help="the local cloud's endpoint, e.g. http://127.0.0.1:4566")
    retrain.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    retrain.set_defaults(func=retrain_command)


def retrain_command(args: argparse.Namespace) -> int:
    # Imported here so `modelwatch --help` does not wait for scikit-learn.
    from modelwatch.alerts.announcement import retrain_announcement
    from modelwatch.cli.actuals_commands import aws_client, aws_errors_as_user_errors
    from modelwatch.config import RetrainConfig
    from modelwatch.model_bundle import load_bundle
    from modelwatch.retraining import REFUSED, Retrainer

    try:
        bundle = load_bundle(args.model_dir)
    except ModelBundleError as problem:
        raise UserError(str(problem)) from None
    config = RetrainConfig(
        model_dir=args.model_dir,
        actuals_table=args.actuals_table,
        ledger_table=args.ledger_table,
        bucket=args.bucket,
        alert_topic_arn=args.topic_arn,
        quality_metric=args.quality_metric,
        quality_comparison=args.quality_comparison,
        window_days=args.window_days,
        min_labeled_rows=args.min_labeled_rows,
        min_improvement=args.min_improvement,
    )
    retrainer = Retrainer(
        config,
        bundle,
        s3=aws_client("s3", args.endpoint_url, args.region),
        dynamodb=aws_client("dynamodb", args.endpoint_url, args.region),
        sns=aws_client("sns", args.endpoint_url, args.region),
    )
    decision = aws_errors_as_user_errors(lambda: retrainer.retrain(since=args.since))
    print(retrain_announcement(decision.as_dict()))
    # A refusal is an answer, not a failure of the command; scripts tell it by the status.
    return 3 if decision.decision == REFUSED else 0
