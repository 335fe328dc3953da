"""`modelwatch demo`, `modelwatch local up`, `modelwatch replay`: the local cloud from the command line.

Only argument wiring lives here; the work is in modelwatch.local.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelwatch.errors import UserError

_PARAM_HELP = "override a template parameter, e.g. --param QualityThreshold=0.25 (repeatable)"
# When the local cloud subscribed its stand-in address (modelwatch.local.cloud.LOCAL_ALERT_EMAIL).
STAND_IN_NOTE = (
    "{email} is a stand-in: no AlertEmail or SlackWebhookSecretName was given, and the template "
    "refuses a stack without an alert channel; its emails are only recorded locally"
)


def _demo(args: argparse.Namespace) -> int:
    from modelwatch.local.demo import run_demo

    return run_demo(args.out, labels_delay_periods=args.labels_delay)


def _print(text: str) -> None:
    stream = sys.__stdout__ or sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _aws_cli() -> str:
    """`aws` when one is on PATH, else the AWS CLI `make install` put beside this Python."""
    beside = Path(sys.executable).parent / "aws"
    return "aws" if shutil.which("aws") or not beside.exists() else str(beside)


def _local_up(args: argparse.Namespace) -> int:
    from modelwatch.local.cloud import DEFAULT_MODEL_DIR, LocalCloud, RealClock
    from modelwatch.local.demo import print_alert
    from modelwatch.local.template import parse_parameter_overrides

    out_dir = (args.out or Path("out") / f"local-{datetime.now(UTC):%Y%m%d-%H%M%S}").resolve()

    def listener(kind: str, payload: Any) -> None:
        if kind == "invocation":
            key, invocation = payload
            status = (
                "ok" if invocation.ok else f"FAILED after {invocation.attempts} attempts: {invocation.error}"
            )
            result = invocation.result if isinstance(invocation.result, dict) else {}
            details = ", ".join(f"{b.get('key')}: {b.get('status')}" for b in result.get("batches") or [])
            _print(
                f"[{datetime.now(UTC):%H:%M:%S}] {invocation.function} <- {key}  {status} "
                f"({invocation.seconds:.1f}s){'  ' + details if details else ''}"
            )
        elif kind == "alarm":
            _print(
                f"[{datetime.now(UTC):%H:%M:%S}] {payload.alarm.name}: "
                f"{payload.evaluation.previous_state} -> "
                f"{payload.evaluation.state} ({payload.evaluation.reason})"
            )
        elif kind == "alert":
            print_alert(payload)
        elif kind == "warning":
            _print(f"! {payload}")

    cloud = LocalCloud(
        out_dir=out_dir,
        model_dir=args.model_dir or DEFAULT_MODEL_DIR,
        parameters=parse_parameter_overrides(args.param),
        port=args.port,
        clock=RealClock(),
        listener=listener,
    )
    cloud.start()
    try:
        stack = cloud.stack
        bucket = cloud.bucket_for("incoming/")
        endpoint = cloud.endpoint_url
        tables = ", ".join(str(r.ref) for r in stack.of_type("AWS::DynamoDB::Table"))
        _print(f"modelwatch local cloud: stack {stack.stack_name} from template.yaml, AWS at {endpoint}")
        _print(f"  bucket  {bucket}")
        _print(f"  tables  {tables}")
        for logical_id, alarm in stack.alarms.items():
            _print(
                f"  alarm   {logical_id}: {alarm.name} ({alarm.metric_name} {alarm.comparison_operator} "
                f"{alarm.threshold:g}, {alarm.datapoints_to_alarm} of {alarm.evaluation_periods} x "
                f"{alarm.period_seconds} s; evaluated every few seconds on the real clock)"
            )
        for subscription in cloud.clients.sns.list_subscriptions()["Subscriptions"]:
            _print(f"  alerts  {subscription['Protocol']} -> {subscription['Endpoint']}")
        if cloud.stand_in_email:
            _print(f"          ({STAND_IN_NOTE.format(email=cloud.stand_in_email)})")
        _print(f"  output  {out_dir} (emails in outbox/, function logs in logs/)")
        cli = f"{_aws_cli()} --endpoint-url {endpoint} --region {stack.region}"
        _print("\nTry (any credentials work, e.g. AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local):")
        _print(f"  {cli} s3 cp samplefiles/classification/actuals.csv s3://{bucket}/actuals/actuals.csv")
        _print(
            f"  {cli} s3 cp samplefiles/classification/batches/batch-01.csv s3://{bucket}/incoming/batch-01.csv"
        )
        _print(f"  {cli} s3 ls --recursive s3://{bucket}/results/")
        _print(f"  {cli} cloudwatch describe-alarms --query 'MetricAlarms[].[AlarmName,StateValue]'")
        if "ModelLayerName" in stack.outputs:
            promotion = (
                f"--bucket {bucket} --layer-name {stack.outputs['ModelLayerName']} --endpoint-url {endpoint}"
            )
            _print(
                f"  modelwatch model promote --version V {promotion}   (a retrained candidate; then rollback)"
            )
        _print("Ctrl-C stops.\n")
        cloud.run_in_background()
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        _print("\nStopping the local cloud ...")
    finally:
        cloud.stop()
    return 0


def _print_replay_alert(alert: Any) -> None:
    """One line per alert as it is delivered (the bodies go to the JSON: the work folder is removed)."""
    if alert.channel == "email":
        _print(f"  alert  email to {alert.recipient}: {alert.subject}")
    else:
        first_line = next(iter(alert.body.splitlines()), "")
        _print(f"  alert  Slack ({alert.state} {alert.alarm}): {first_line}")


def _replay(args: argparse.Namespace) -> int:
    from modelwatch.local.backtest import NO_CHANNEL, NO_LABELS, Backtest
    from modelwatch.local.cloud import LocalCloud, VirtualClock
    from modelwatch.local.template import parse_parameter_overrides

    for path in [args.model_dir, *args.actuals, *args.batches]:
        if not path.exists():
            raise UserError(f"{path} does not exist")
    work_dir = args.json.resolve().parent / f".replay-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    cloud = LocalCloud(
        out_dir=work_dir,
        model_dir=args.model_dir,
        # A replay backtests thresholds, and its alerts[] are the alarms' notifications: no
        # retrain function (it would fit models at every ALARM) unless
        # --param RetrainOnAlarm=... asks for it.
        parameters={"RetrainOnAlarm": "", **parse_parameter_overrides(args.param)},
        clock=VirtualClock(datetime.now(UTC)),
        listener=lambda kind, payload: _print_replay_alert(payload) if kind == "alert" else None,
    )
    with cloud:
        channels = cloud.alert_channels()
        if channels:
            _print("Alerts go to: " + ", ".join(f"{c.channel} {c.endpoint}" for c in channels))
            if cloud.stand_in_email:
                _print(f"  ({STAND_IN_NOTE.format(email=cloud.stand_in_email)})")
        else:
            _print(f"Note: {NO_CHANNEL}")
        if not args.actuals and "LabelsStaleAlarm" in cloud.stack.alarms:
            # What a deployed model without labels would show too; said so it reads as the truth.
            _print(f"Note: {NO_LABELS}")
        backtest = Backtest(
            cloud,
            on_batch=lambda r: _print(
                f"{r.key}: {r.status} rows={r.rows} labeled={r.labeled_rows} "
                + " ".join(f"{k}={v:.4g}" for k, v in r.metrics.items())
                + " alarms="
                + ",".join(f"{k}:{v}" for k, v in r.alarms.items())
            ),
            on_period=lambda p: (
                _print(f"period {p.index + 1} ({p.start:%Y-%m-%d %H:%M}Z): " + "; ".join(p.events))
                if p.events
                else None
            ),
        )
        results = backtest.run(
            list(args.batches), actuals=list(args.actuals), labels_delay_periods=args.labels_delay
        )
        document = backtest.document()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
        if args.results:
            copied = backtest.copy_results(args.results)
            _print(f"{copied} result files copied to {args.results}")
    shutil.rmtree(work_dir, ignore_errors=True)
    by_channel = ", ".join(
        f"{sum(a.channel == kind for a in cloud.alerts)} {kind}"
        for kind in dict.fromkeys(channel.channel for channel in channels)
    )
    _print(
        f"{len(results)} batches, {len(cloud.alerts)} alerts"
        + (f" ({by_channel})" if channels else " (no channel configured)")
        + f"; written to {args.json}"
    )
    return 0


def _periods(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of alarm periods (0 or more), got {text!r}"
        )
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="the sample churn story end to end on the local cloud (make demo)"
    )
    demo.add_argument("--out", type=Path, help="output folder (default: ./out/demo-<timestamp>/)")
    demo.add_argument(
        "--labels-delay",
        type=_periods,
        default=0,
        metavar="N",
        help="each batch's labels arrive N alarm periods after it (default 0: all before the first batch)",
    )
    demo.set_defaults(func=_demo)

    local = subparsers.add_parser("local", help="the local cloud: template.yaml on an embedded AWS")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    up = local_commands.add_parser("up", help="start the stack and process files dropped with the AWS CLI")
    up.add_argument("--param", action="append", metavar="KEY=VALUE", help=_PARAM_HELP)
    up.add_argument(
        "--port", type=int, default=4566, help="local AWS endpoint port (default: 4566; 0 = any free)"
    )
    up.add_argument("--model-dir", type=Path, help="model directory (default: layers/model/artifact)")
    up.add_argument("--out", type=Path, help="folder for emails and logs (default: ./out/local-<timestamp>/)")
    up.set_defaults(func=_local_up)

    replay = subparsers.add_parser(
        "replay",
        help="backtest the template's alarms on historical batches (virtual clock, one batch per period)",
    )
    replay.add_argument("--model-dir", type=Path, required=True, help="the model directory to monitor")
    replay.add_argument("--actuals", type=Path, action="append", default=[], help="actuals CSV (repeatable)")
    replay.add_argument(
        "--labels-delay",
        type=_periods,
        default=0,
        metavar="N",
        help="load each batch's actuals (the rows whose ids it holds) N alarm periods after the batch "
        "(default 0: with the batch); rows of no batch are loaded at the start",
    )
    replay.add_argument("--param", action="append", metavar="KEY=VALUE", help=_PARAM_HELP)
    replay.add_argument("--results", type=Path, help="copy everything written under results/ to this folder")
    replay.add_argument(
        "--json", type=Path, required=True, help="where to write the per-batch and alert summary"
    )
    replay.add_argument(
        "batches", type=Path, nargs="+", metavar="BATCH_FILE", help="batch files, in time order"
    )
    replay.set_defaults(func=_replay)
