"""`modelwatch model build` and `model package` write a model directory; `model check`
compares its name with the ModelName the stack deploys, and its kind with the
QualityMetric QualityAlarm watches; `model retrain` (retrain_commands)
retrains a challenger on demand.

Only the command-line wiring lives here; the work is in modelwatch.modeling.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from modelwatch.cli.promote_commands import register as register_promotion
from modelwatch.cli.retrain_commands import register as register_retrain
from modelwatch.errors import UserError

if TYPE_CHECKING:
    from modelwatch.modeling import ColumnOptions


def _feature_list(raw: str) -> list[str]:
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated column names, e.g. tenure_months,plan")
    return names


def _add_column_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="column holding the ground truth")
    parser.add_argument(
        "--id-column", default="record_id", help="column identifying a row (default: record_id)"
    )
    parser.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="default: inferred from the target (text or a few whole numbers means classification)",
    )
    parser.add_argument(
        "--features",
        type=_feature_list,
        help="comma-separated feature columns (default: every column but the id, target and timestamp)",
    )
    parser.add_argument("--name", help="model name shown in metrics and alerts")
    parser.add_argument(
        "--timestamp-column",
        help="column holding each row's event time; batches are stamped with it when S3 metadata has none",
    )
    parser.add_argument(
        "--positive-label",
        help="the class Precision, Recall, F1 and ROCAUC are about (binary; default: the larger class, "
        "e.g. 1 of 0/1, True of False/True)",
    )
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")


def _columns(args: argparse.Namespace) -> ColumnOptions:
    # Imported when a command runs: scikit-learn and scipy would make `--help` take seconds.
    from modelwatch.modeling import ColumnOptions

    return ColumnOptions(
        target=args.target,
        id_column=args.id_column,
        task=args.task,
        features=args.features,
        timestamp_column=args.timestamp_column,
        positive_label=args.positive_label,
    )


def _build(args: argparse.Namespace) -> int:
    from modelwatch.modeling import build_model

    summary = build_model(
        args.train,
        _columns(args),
        args.out,
        name=args.name,
        reference_fraction=args.reference_fraction,
        seed=args.seed,
    )
    print(summary.render())
    return 0


def _package(args: argparse.Namespace) -> int:
    if args.trust and Path(args.model).suffix != ".skops":
        raise UserError("--trust applies to .skops files only; a .joblib file is loaded as it is")
    from modelwatch.modeling import package_model

    summary = package_model(
        args.model, args.reference, _columns(args), args.out, name=args.name, trust=args.trust
    )
    print(summary.render())
    return 0


def _check(args: argparse.Namespace) -> int:
    from modelwatch.cli.model_check import check_model_name, check_quality_metric

    config_file = args.config_file or args.template.parent / "samconfig.toml"
    # Both checks before any output: a refusal is the only thing printed.
    name = check_model_name(args.model_dir, args.template, config_file, args.config_env)
    metric = check_quality_metric(args.model_dir, args.template, config_file, args.config_env)
    print(name)
    print(metric.confirmation)
    for warning in metric.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("model", help="build or package a model directory (the model layer)")
    commands = group.add_subparsers(dest="model_command", required=True)

    build = commands.add_parser(
        "build",
        help="train the default pipeline on a CSV and write the model directory",
        description="Train a default pipeline (imputation, one-hot encoding, histogram gradient boosting) "
        "on part of a CSV, hold out the rest as the reference for metrics and drift, and write "
        "model.skops, metadata.json and baseline.json.",
    )
    build.add_argument("--train", required=True, type=Path, help="training CSV with a header row")
    _add_column_options(build)
    build.add_argument(
        "--reference-fraction",
        type=float,
        default=0.25,
        help="share of rows held out as the reference for metrics and drift (default: 0.25)",
    )
    build.add_argument("--seed", type=int, default=0, help="seed for the split and the model (default: 0)")
    build.set_defaults(func=_build)

    package = commands.add_parser(
        "package",
        help="wrap an already-fitted estimator or pipeline with a reference CSV",
        description="Write a model directory for a fitted estimator. The reference CSV (rows the model "
        "was not fitted on, with the target) gives the reference metrics and drift baseline.",
    )
    package.add_argument(
        "--model",
        required=True,
        type=Path,
        help="fitted estimator: .joblib (runs code from the file: only your own) or .skops",
    )
    package.add_argument(
        "--reference",
        required=True,
        type=Path,
        help="CSV of held-out rows with the feature and target columns",
    )
    package.add_argument(
        "--trust",
        action="store_true",
        help="accept the types a .skops file holds that skops does not trust by default (they are printed)",
    )
    _add_column_options(package)
    package.set_defaults(func=_package)

    check = commands.add_parser(
        "check",
        help="fail when the model's name differs from the ModelName the stack will deploy, or the "
        "model can never publish the QualityMetric its alarm watches",
        description="Compare metadata.json's name with the template's ModelName parameter as sam deploy "
        "would set it (samconfig.toml's parameter_overrides, else the template's default). Metrics and "
        "alarms use ModelName, so a different name in the model is a mistake; exit status 2 says how to "
        "fix it. Likewise QualityMetric: one this model never publishes (a classification metric for a "
        "regressor, ROCAUC for a multiclass model, ROCAUC or LogLoss without predict_proba) leaves "
        "QualityAlarm without data; one late labels cannot update gets a warning.",
    )
    check.add_argument(
        "--model-dir",
        type=Path,
        default=Path("layers/model/artifact"),
        help="the model directory (default: layers/model/artifact)",
    )
    check.add_argument(
        "--template", type=Path, default=Path("template.yaml"), help="SAM template (default: template.yaml)"
    )
    check.add_argument(
        "--config-file",
        type=Path,
        help="SAM config with parameter_overrides (default: samconfig.toml beside the template)",
    )
    check.add_argument(
        "--config-env", default="default", help="environment in the SAM config (default: default)"
    )
    check.set_defaults(func=_check)

    register_retrain(commands)
    register_promotion(commands)
