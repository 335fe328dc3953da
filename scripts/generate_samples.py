"""Generate the committed sample data in samplefiles/ (run by `make samples`).

Two scenarios, each a training file, a sequence of batch files and the late-arriving
actuals for the batches. The data is synthetic but the ground truth follows a known
relation, so the story the files tell (healthy, drifting, recovered) is a property of
the generator and tests can check it (tests/unit/test_samples.py). See
samplefiles/README.md for the scenario in words.

Everything comes from one seeded numpy Generator per scenario, values are rounded
before they are written, and the CSV writer is given a fixed line terminator, so the
same numpy version produces byte-identical files on any machine. The one Parquet batch
is written by DuckDB (a dev dependency, pinned), whose output is byte-identical for the
same rows and version. (numpy does not
promise identical Generator streams across versions; if a numpy upgrade changes the
files, regenerate them and commit them with the upgrade.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSIFICATION_SEED = 20261126
REGRESSION_SEED = 20261127
LATE_LABEL_FRACTION = 0.08

# --- classification: customer churn -------------------------------------------------

CHURN_TRAIN_ROWS = 6000
# Small enough that `make demo` stays well under 30 s on two cores (the embedded moto server
# handles ~150 BatchWriteItem a second), large enough for quiet drift statistics.
CHURN_BATCH_ROWS = 1000
CHURN_BATCHES = 12
# How far each batch has moved away from the training world (0 = same as training,
# 1 = fully drifted). Batches 5-9 drift progressively; 10-12 are back to normal after
# the upstream fix.
CHURN_SEVERITY = {5: 0.3, 6: 0.5, 7: 0.7, 8: 0.85, 9: 1.0}
PLANS = ("basic", "standard", "premium")
PLAN_WEIGHTS = (0.45, 0.35, 0.20)
# The plan launched during the drift: the model never saw it in training.
NEW_PLAN = "unlimited"
PLAN_BASE_CHARGE = {"basic": 35.0, "standard": 65.0, "premium": 95.0, NEW_PLAN: 85.0}
PLAN_EFFECT = {"basic": 0.0, "standard": -0.3, "premium": -0.6, NEW_PLAN: 0.5}
REGIONS = ("north", "south", "east", "west")
REGION_EFFECT = {"north": 0.0, "south": 0.2, "east": -0.2, "west": 0.1}
PAYMENT_METHODS = ("card", "bank_transfer", "invoice")
PAYMENT_WEIGHTS = (0.5, 0.3, 0.2)
PAYMENT_EFFECT = {"card": 0.0, "bank_transfer": -0.4, "invoice": 0.6}
CHANNELS = ("web", "app", "store", "partner")
# Batches where a few rows lose data_usage_gb (a flaky upstream meter).
CHURN_MISSING_USAGE_BATCHES = (3, 7, 11)
# Batches the upstream exports as Parquet instead of CSV (its new export, after the fix):
# the same rows a CSV would hold, with their types, so the demo and the tests read both.
CHURN_PARQUET_BATCHES = (12,)
# Scales the whole logit so the relation is strong enough for a ~10-15% error rate.
CHURN_LOGIT_SCALE = 1.6


def _churn_features(rng: np.random.Generator, rows: int, severity: float) -> pd.DataFrame:
    plan = rng.choice(PLANS, size=rows, p=PLAN_WEIGHTS).astype(object)
    if severity > 0:
        # The new plan takes a growing share of the batch as the drift progresses.
        plan[rng.random(rows) < 0.3 * severity] = NEW_PLAN
    base_charge = np.array([PLAN_BASE_CHARGE[p] for p in plan])
    tenure = np.clip(np.round(rng.gamma(1.6, 14.0, size=rows)), 1, 72).astype(int)
    # A price increase: every bill goes up with the drift, on top of the plan price.
    monthly_charges = np.round(base_charge + rng.normal(0.0, 8.0, rows) + 18.0 * severity, 2)
    # A product problem: support tickets become more frequent.
    support_tickets = rng.poisson(0.9 * (1.0 + 1.8 * severity), size=rows)
    data_usage_gb = np.round(rng.lognormal(np.log(9.0), 0.6, size=rows), 1)
    days_since_last_login = np.round(rng.exponential(8.0, size=rows)).astype(int)
    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly_charges,
            "support_tickets": support_tickets,
            "data_usage_gb": data_usage_gb,
            "days_since_last_login": days_since_last_login,
            "plan": plan,
            "region": rng.choice(REGIONS, size=rows),
            "payment_method": rng.choice(PAYMENT_METHODS, size=rows, p=PAYMENT_WEIGHTS),
        }
    )


def _churn_logit(features: pd.DataFrame, severity: float) -> np.ndarray:
    """The true log-odds of churn; ``severity`` > 0 bends the relation (concept drift)."""
    logit = (
        -1.2
        - 0.07 * (features["tenure_months"] - 20)
        + 0.05 * (features["monthly_charges"] - 60)
        + 0.8 * (features["support_tickets"] - 1)
        + 0.12 * (features["days_since_last_login"] - 8)
        - 0.06 * (features["data_usage_gb"] - 9)
        + features["plan"].map(PLAN_EFFECT)
        + features["region"].map(REGION_EFFECT)
        + features["payment_method"].map(PAYMENT_EFFECT)
    )
    if severity > 0:
        # A competitor's offer aimed at loyal heavy users: long tenure and high usage
        # stop protecting against churn and start driving it, while the price stops
        # mattering (the offer undercuts everyone).
        logit = logit + severity * (
            0.09 * (features["tenure_months"] - 20)
            + 0.10 * (features["data_usage_gb"] - 9)
            - 0.03 * (features["monthly_charges"] - 60)
            - 0.5 * (features["support_tickets"] - 1)
        )
    return CHURN_LOGIT_SCALE * logit.to_numpy(dtype=float)


def _churn_labels(rng: np.random.Generator, features: pd.DataFrame, severity: float) -> np.ndarray:
    probability = 1.0 / (1.0 + np.exp(-_churn_logit(features, severity)))
    return (rng.random(len(features)) < probability).astype(int)


def generate_classification(out_dir: Path) -> None:
    rng = np.random.default_rng(CLASSIFICATION_SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "batches").mkdir(exist_ok=True)

    train = _churn_features(rng, CHURN_TRAIN_ROWS, 0.0)
    train.insert(0, "record_id", [f"tr-r{i:05d}" for i in range(CHURN_TRAIN_ROWS)])
    train["churned"] = _churn_labels(rng, train, 0.0)
    _write_csv(train, out_dir / "train.csv")

    actuals = []
    for batch in range(1, CHURN_BATCHES + 1):
        severity = CHURN_SEVERITY.get(batch, 0.0)
        features = _churn_features(rng, CHURN_BATCH_ROWS, severity)
        labels = _churn_labels(rng, features, severity)
        if batch in CHURN_MISSING_USAGE_BATCHES:
            missing = rng.choice(CHURN_BATCH_ROWS, size=12, replace=False)
            features.loc[missing, "data_usage_gb"] = np.nan
        record_ids = [f"b{batch:02d}-r{i:05d}" for i in range(CHURN_BATCH_ROWS)]
        features.insert(0, "record_id", record_ids)
        # An extra column the model does not use; it passes through to the predictions.
        features["channel"] = rng.choice(CHANNELS, size=CHURN_BATCH_ROWS, p=(0.45, 0.35, 0.15, 0.05))
        if batch in CHURN_PARQUET_BATCHES:
            _write_parquet(features, out_dir / "batches" / f"batch-{batch:02d}.parquet")
        else:
            _write_csv(features, out_dir / "batches" / f"batch-{batch:02d}.csv")
        actuals.append(pd.DataFrame({"record_id": record_ids, "churned": labels}))
    _write_actuals(rng, pd.concat(actuals, ignore_index=True), out_dir / "actuals.csv")


# --- retraining: the churn world changes for good ----------------------------------

# The demo's retraining story (modelwatch demo, second act): the sample churn model meets a
# lasting change. Batches 1-3 are the training world; from batch 4 on the competitor's offer
# is permanent (severity 1 inputs) and turns the relation around: long tenure and heavy use
# now drive churn. Unlike classification/'s passing drift, the new relation is learnable, so a
# model retrained on the labeled changed batches is better than the champion and brings the
# error back under the alarm's threshold. The champion is classification/'s model.
RETRAIN_SEED = 20261201
RETRAIN_BATCHES = 8
RETRAIN_CHANGE_FROM = 4
# Log-odds added to the training relation once the change has come (before the logit scale).
RETRAIN_TENURE_EFFECT = 0.15
RETRAIN_USAGE_EFFECT = 0.14


def _changed_churn_labels(rng: np.random.Generator, features: pd.DataFrame) -> np.ndarray:
    logit = _churn_logit(features, 0.0) + CHURN_LOGIT_SCALE * (
        RETRAIN_TENURE_EFFECT * (features["tenure_months"] - 20)
        + RETRAIN_USAGE_EFFECT * (features["data_usage_gb"] - 9)
    ).to_numpy(dtype=float)
    return (rng.random(len(features)) < 1.0 / (1.0 + np.exp(-logit))).astype(int)


def generate_retraining(out_dir: Path) -> None:
    rng = np.random.default_rng(RETRAIN_SEED)
    (out_dir / "batches").mkdir(parents=True, exist_ok=True)
    actuals = []
    for batch in range(1, RETRAIN_BATCHES + 1):
        changed = batch >= RETRAIN_CHANGE_FROM
        features = _churn_features(rng, CHURN_BATCH_ROWS, 1.0 if changed else 0.0)
        labels = _changed_churn_labels(rng, features) if changed else _churn_labels(rng, features, 0.0)
        record_ids = [f"rt{batch:02d}-r{i:05d}" for i in range(CHURN_BATCH_ROWS)]
        features.insert(0, "record_id", record_ids)
        _write_csv(features, out_dir / "batches" / f"batch-{batch:02d}.csv")
        actuals.append(pd.DataFrame({"record_id": record_ids, "churned": labels}))
    # Every label arrives: retraining learns from them (late labels are classification/'s story).
    _write_csv(pd.concat(actuals, ignore_index=True), out_dir / "actuals.csv")


# --- regression: delivery time -----------------------------------------------------

DELIVERY_TRAIN_ROWS = 2000
DELIVERY_BATCH_ROWS = 500
DELIVERY_BATCHES = 6
DELIVERY_SEVERITY = {4: 0.6, 5: 1.0}
COURIER_TYPES = ("bike", "scooter", "car")
COURIER_WEIGHTS = (0.45, 0.35, 0.20)
MINUTES_PER_KM = {"bike": 4.0, "scooter": 2.8, "car": 2.4}
WEATHER = ("clear", "cloudy", "rain")
WEATHER_WEIGHTS = (0.6, 0.25, 0.15)
NEW_WEATHER = "snow"  # never seen in training
WEATHER_MINUTES = {"clear": 0.0, "cloudy": 1.0, "rain": 5.0, NEW_WEATHER: 12.0}
HOURS = np.arange(10, 24)
# Lunch and dinner peaks.
HOUR_WEIGHTS = np.array([2, 4, 9, 8, 4, 3, 3, 5, 9, 10, 8, 5, 3, 2], dtype=float)
DELIVERY_MISSING_DISTANCE_BATCHES = (2, 5)


def _delivery_features(rng: np.random.Generator, rows: int, severity: float) -> pd.DataFrame:
    weather = rng.choice(WEATHER, size=rows, p=WEATHER_WEIGHTS).astype(object)
    if severity > 0:
        weather[rng.random(rows) < 0.35 * severity] = NEW_WEATHER
    # A new delivery zone on the edge of town: longer trips.
    distance_km = np.round(np.clip(rng.gamma(2.0, 1.6, size=rows) * (1.0 + 0.6 * severity), 0.3, 25.0), 2)
    return pd.DataFrame(
        {
            "distance_km": distance_km,
            "items": 1 + rng.poisson(1.5, size=rows),
            "hour_of_day": rng.choice(HOURS, size=rows, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum()),
            "courier_type": rng.choice(COURIER_TYPES, size=rows, p=COURIER_WEIGHTS),
            "weather": weather,
        }
    )


def _delivery_minutes(rng: np.random.Generator, features: pd.DataFrame, severity: float) -> np.ndarray:
    rush = features["hour_of_day"].isin([12, 13, 18, 19, 20]).to_numpy()
    # Road works slow every courier down per km (concept drift).
    per_km = features["courier_type"].map(MINUTES_PER_KM).to_numpy() * (1.0 + 0.5 * severity)
    minutes = (
        12.0
        + 2.0 * features["items"].to_numpy()
        + per_km * features["distance_km"].to_numpy()
        + 6.0 * rush
        + features["weather"].map(WEATHER_MINUTES).to_numpy()
        + rng.normal(0.0, 3.0, len(features))
    )
    return np.round(np.maximum(minutes, 5.0), 1)


def generate_regression(out_dir: Path) -> None:
    rng = np.random.default_rng(REGRESSION_SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "batches").mkdir(exist_ok=True)

    train = _delivery_features(rng, DELIVERY_TRAIN_ROWS, 0.0)
    train.insert(0, "record_id", [f"dtr-r{i:05d}" for i in range(DELIVERY_TRAIN_ROWS)])
    train["delivery_minutes"] = _delivery_minutes(rng, train, 0.0)
    _write_csv(train, out_dir / "train.csv")

    actuals = []
    for batch in range(1, DELIVERY_BATCHES + 1):
        severity = DELIVERY_SEVERITY.get(batch, 0.0)
        features = _delivery_features(rng, DELIVERY_BATCH_ROWS, severity)
        minutes = _delivery_minutes(rng, features, severity)
        if batch in DELIVERY_MISSING_DISTANCE_BATCHES:
            missing = rng.choice(DELIVERY_BATCH_ROWS, size=4, replace=False)
            features.loc[missing, "distance_km"] = np.nan
        record_ids = [f"d{batch:02d}-r{i:05d}" for i in range(DELIVERY_BATCH_ROWS)]
        features.insert(0, "record_id", record_ids)
        _write_csv(features, out_dir / "batches" / f"batch-{batch:02d}.csv")
        actuals.append(pd.DataFrame({"record_id": record_ids, "delivery_minutes": minutes}))
    _write_actuals(rng, pd.concat(actuals, ignore_index=True), out_dir / "actuals.csv")


# --- shared ----------------------------------------------------------------------


def _write_actuals(rng: np.random.Generator, actuals: pd.DataFrame, path: Path) -> None:
    # Some labels have not arrived yet: the monitor must cope with partial coverage.
    late = rng.random(len(actuals)) < LATE_LABEL_FRACTION
    _write_csv(actuals.loc[~late], path)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, lineterminator="\n")


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    import duckdb

    connection = duckdb.connect()
    try:
        connection.register("frame", frame)
        connection.execute(f"COPY frame TO '{path}' (FORMAT PARQUET, COMPRESSION snappy)")
    finally:
        connection.close()


def batch_paths(folder: Path) -> list[Path]:
    """A scenario's batch files, CSV and Parquet, in batch order."""
    return sorted([*folder.glob("batches/batch-*.csv"), *folder.glob("batches/batch-*.parquet")])


def read_batch_file(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        import fastparquet

        return fastparquet.ParquetFile(path).to_pandas()
    return pd.read_csv(path)


# --- samplefiles/README.md's figures ---------------------------------------------------

README_BEGIN = "<!-- figures: written by scripts/generate_samples.py from the files; do not edit -->"
README_END = "<!-- end of figures -->"


def _batch_figures(folder: Path, target: str) -> tuple[dict[int, pd.DataFrame], pd.DataFrame]:
    batches = {int(path.stem.split("-")[1]): read_batch_file(path) for path in batch_paths(folder)}
    return batches, pd.read_csv(folder / "actuals.csv")


def _numbers(values: list[int]) -> str:
    return (
        ", ".join(str(value) for value in values[:-1]) + f" and {values[-1]}"
        if len(values) > 1
        else str(values[0])
    )


def _scenario_figures(folder: Path, target: str, id_example: str, gap_column: str) -> list[str]:
    """The file table and the coverage and gap figures of one scenario, measured on its files."""
    train = pd.read_csv(folder / "train.csv")
    paths = batch_paths(folder)
    batches = {int(path.stem.split("-")[1]): read_batch_file(path) for path in paths}
    actuals = pd.read_csv(folder / "actuals.csv")
    features = [column for column in train.columns if column not in ("record_id", target)]
    numeric = [column for column in features if pd.api.types.is_numeric_dtype(train[column])]
    sizes = sorted({len(batch) for batch in batches.values()})
    batch_rows = sum(len(batch) for batch in batches.values())
    labelled = set(actuals["record_id"])
    coverage = [batch["record_id"].isin(labelled).mean() for batch in batches.values()]
    gaps = {number: int(batch[gap_column].isna().sum()) for number, batch in batches.items()}
    gap_batches = [number for number, count in gaps.items() if count]
    if target == "churned":
        target_text = f"target `{target}` (0/1, {train[target].mean():.0%} churn)"
    else:
        target_text = f"target `{target}` (mean {train[target].mean():.1f})"
    extra = [c for c in batches[1].columns if c not in features and c != "record_id"]
    extra_text = (
        f", and {', '.join(f'`{c}`' for c in extra)} (extra columns that pass through)" if extra else ""
    )
    csv_names = [path.name for path in paths if path.suffix == ".csv"]
    parquet_names = [path.name for path in paths if path.suffix == ".parquet"]
    names = f"`batches/{csv_names[0]}` … `{csv_names[-1]}`" + "".join(f", `{name}`" for name in parquet_names)
    return [
        "| file | rows | columns |",
        "|---|---|---|",
        f"| `train.csv` | {len(train):,} | `record_id`, {len(numeric)} numeric and "
        f"{len(features) - len(numeric)} categorical features, {target_text} |",
        f"| {names} | {'–'.join(f'{n:,}' for n in sizes)} each | "
        f"`record_id` (`{id_example}`), the features{extra_text}; no target |",
        f"| `actuals.csv` | {len(actuals):,} | `record_id`, `{target}` for the batch rows; "
        f"{1 - len(actuals) / batch_rows:.1%} of ids are missing (labels that have not arrived yet) |",
        "",
        f"Label coverage per batch: {min(coverage):.3f}–{max(coverage):.3f}. Batches "
        f"{_numbers(gap_batches)} have {_numbers([gaps[n] for n in gap_batches])} rows with an empty "
        f"`{gap_column}`; the default pipeline imputes them.",
    ]


def readme_figures(samples: Path) -> str:
    lines = [README_BEGIN, "", "### classification/ — customer churn", ""]
    lines += _scenario_figures(samples / "classification", "churned", "b07-r00042", "data_usage_gb")
    lines += ["", "### regression/ — delivery time", ""]
    lines += _scenario_figures(samples / "regression", "delivery_minutes", "d04-r00042", "distance_km")
    return "\n".join([*lines, "", README_END])


def write_readme(out_dir: Path) -> None:
    """samplefiles/README.md's prose with its figures section measured on the files in ``out_dir``."""
    text = (REPO_ROOT / "samplefiles" / "README.md").read_text(encoding="utf-8")
    before, _, rest = text.partition(README_BEGIN)
    _, found, after = rest.partition(README_END)
    if not found:
        raise SystemExit(f"samplefiles/README.md has no {README_BEGIN!r} ... {README_END!r} section")
    (out_dir / "README.md").write_text(
        before + readme_figures(out_dir) + after, encoding="utf-8", newline="\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "samplefiles",
        help="folder to write classification/, regression/ and retraining/ into (default: samplefiles/)",
    )
    args = parser.parse_args(argv)
    generate_classification(args.out / "classification")
    generate_regression(args.out / "regression")
    generate_retraining(args.out / "retraining")
    write_readme(args.out)
    print(f"wrote sample data under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
