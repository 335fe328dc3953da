"""`modelwatch demo`: the sample churn story through the whole local pipeline, then retraining.

Template -> stack on the embedded AWS -> actuals file -> twelve hourly batches (virtual
clock) -> metrics -> alarm -> SNS -> email outbox and, when the template has the Slack
notifier, a real local webhook receiver. Everything it shows is also written to the
output folder: timeline (JSON and text), chart, emails, Slack payloads, batch results and
the functions' logs.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from modelwatch.local.backtest import Backtest, BatchResult, PeriodResult
from modelwatch.local.cloud import (
    DEFAULT_MODEL_DIR,
    DEFAULT_TEMPLATE,
    PROJECT_ROOT,
    Alert,
    LocalCloud,
    VirtualClock,
)
from modelwatch.local.template import load_template
from modelwatch.modeling import ColumnOptions, build_model

SAMPLES = PROJECT_ROOT / "samplefiles" / "classification"
# Act two: the churn world changes for good, and retraining closes the loop (samplefiles/README.md).
RETRAINING_SAMPLES = PROJECT_ROOT / "samplefiles" / "retraining"
# The demo's on-call address: it makes the template's email subscription exist (AlertEmail).
DEMO_EMAIL = "oncall@example.com"


def _out(text: str = "", stream: TextIO | None = None) -> None:
    target = stream or sys.__stdout__ or sys.stdout
    target.write(text + "\n")
    target.flush()


def ensure_sample_model(model_dir: Path, template_path: Path) -> bool:
    """Train the sample model into the model layer's directory when it is missing; True if built."""
    if (model_dir / "metadata.json").is_file():
        return False

    model_name = str(load_template(template_path)["Parameters"]["ModelName"]["Default"])
    _out(f"Building the sample model into {model_dir} (first run only) ...")
    summary = build_model(SAMPLES / "train.csv", ColumnOptions(target="churned"), model_dir, name=model_name)
    _out(summary.render())
    return True


def quality_alarm(cloud: LocalCloud, results: list[BatchResult]) -> tuple[str, Any] | None:
    """The alarm whose metric the batches report (the quality alarm), by logical id."""
    reported = {name for result in results for name in [*result.metrics, *result.final_metrics]}
    for logical_id, alarm in cloud.stack.alarms.items():
        if alarm.metric_name in reported:
            return logical_id, alarm
    return next(iter(cloud.stack.alarms.items()), None)


def shown_alarms(cloud: LocalCloud, results: list[BatchResult]) -> list[str]:
    """Alarms on what the batches report (quality, drift) get a column; the rest share one."""
    reported = {name for result in results for name in [*result.metrics, *result.final_metrics]}
    return [lid for lid, alarm in cloud.stack.alarms.items() if alarm.metric_name in reported]


def estimated_figures(result: BatchResult, metric: str) -> dict[str, Any] | None:
    """The report's estimate of ``metric`` with its band, or None when the batch has none."""
    estimated = result.report.get("estimated_performance") or {}
    return (estimated.get("metrics") or {}).get(metric)


def concept_drift(result: BatchResult) -> bool:
    """Whether the batch's labels showed more error than the model's confidence explains."""
    estimated = result.report.get("estimated_performance") or {}
    return any(finding.get("finding") == "concept_drift" for finding in estimated.get("findings") or [])


def timeline_text(cloud: LocalCloud, results: list[BatchResult], *, final: bool = False) -> str:
    """One line per batch; with ``final`` the quality metric over every label received by the end too."""
    watched = quality_alarm(cloud, results)
    metric = watched[1].metric_name if watched else None
    estimated = (
        f"Estimated{metric}" if metric and any(f"Estimated{metric}" in r.metrics for r in results) else None
    )
    has_drift = any("DriftScore" in r.metrics for r in results)
    alarm_ids = shown_alarms(cloud, results)
    others = [lid for lid in cloud.stack.alarms if lid not in alarm_ids]
    # A promotion or rollback during the run: which model scored each batch.
    versions = {r.model_version for r in results if r.model_version}
    model_width = max((len(v) for v in versions), default=0) + 2 if len(versions) > 1 else 0
    header = f"{'batch':<16}{'rows':>6}{'labeled':>9}"
    if model_width:
        header += f"  {'model':<{model_width}}"
    if metric:
        header += f"{metric:>11}"
    if metric and final:
        header += f"{'(final)':>9}"
    if estimated:
        header += f"{'(estimated)':>12}"
    if has_drift:
        header += f"{'DriftScore':>12}"
    widths = {logical_id: max(18, len(logical_id)) for logical_id in alarm_ids}
    header += "".join(f"  {logical_id:<{widths[logical_id]}}" for logical_id in alarm_ids)
    if others:
        header += f"  other alarms ({len(others)})"
    lines = [header, "-" * len(header)]
    for result in results:
        line = f"{result.key.removeprefix('incoming/'):<16}{result.rows or 0:>6}{result.labeled_rows or 0:>9}"
        if model_width:
            line += f"  {result.model_version or '-':<{model_width}}"
        if metric:
            value = result.metrics.get(metric)
            line += f"{value:>11.3f}" if value is not None else f"{'-':>11}"
        if metric and final:
            value = result.final_metrics.get(metric)
            line += f"{value:>9.3f}" if value is not None else f"{'-':>9}"
        if estimated:
            value = result.metrics.get(estimated)
            line += f"{value:>12.3f}" if value is not None else f"{'-':>12}"
        if has_drift:
            value = result.metrics.get("DriftScore")
            line += f"{value:>12.3f}" if value is not None else f"{'-':>12}"
        line += "".join(
            f"  {result.alarms.get(logical_id, '?'):<{widths[logical_id]}}" for logical_id in alarm_ids
        )
        if others:
            states = {lid: result.alarms.get(lid, "?") for lid in others}
            unusual = [f"{lid} {state}" for lid, state in states.items() if state != "OK"]
            line += "  " + (", ".join(unusual) if unusual else "all OK")
        if concept_drift(result):
            line += "  concept drift"
        if result.status != "ok":
            line += f"  {result.status}: {result.report.get('reason', '')}"
        lines.append(line)
    if estimated:
        lines.append(
            f"({estimated}: from the model's calibrated confidence, no labels needed; "
            "concept drift: the labels show more error than that confidence explains)"
        )
    if metric and final:
        lines.append(
            f"({metric}: as known when the batch was scored; final: over every label received by the end)"
        )
    return "\n".join(lines)


def write_chart(cloud: LocalCloud, results: list[BatchResult], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    watched = quality_alarm(cloud, results)
    if watched is None:
        return None
    logical_id, alarm = watched
    labels = [r.key.removeprefix("incoming/").rsplit(".", 1)[0] for r in results]
    positions = list(range(len(results)))
    values = [r.metrics.get(alarm.metric_name) for r in results]
    figure, axis = plt.subplots(figsize=(10, 4.8))
    for position, result in zip(positions, results, strict=True):
        if result.alarms.get(logical_id) == "ALARM":
            axis.axvspan(position - 0.5, position + 0.5, color="tab:red", alpha=0.15, lw=0)
    axis.plot(
        positions,
        [v if v is not None else float("nan") for v in values],
        marker="o",
        color="tab:blue",
        label=f"{alarm.metric_name} (realized, per batch)",
    )
    estimates = [estimated_figures(r, alarm.metric_name) for r in results]
    if any(estimates):
        nan = float("nan")
        axis.plot(
            positions,
            [e["estimated"] if e else nan for e in estimates],
            marker="^",
            linestyle="--",
            color="tab:green",
            label=f"Estimated{alarm.metric_name} (from confidence, before labels)",
        )
        axis.fill_between(
            positions,
            [e["lower"] if e and e["lower"] is not None else nan for e in estimates],
            [e["upper"] if e and e["upper"] is not None else nan for e in estimates],
            color="tab:green",
            alpha=0.12,
            lw=0,
            label="estimate ± 3 standard errors",
        )
        drifted = [p for p, r in zip(positions, results, strict=True) if concept_drift(r)]
        if drifted:
            axis.scatter(
                drifted,
                [values[p] for p in drifted],
                s=140,
                facecolors="none",
                edgecolors="black",
                zorder=5,
                label="realized beyond the estimate's band: concept drift",
            )
    axis.axhline(
        alarm.threshold,
        color="tab:red",
        linestyle="--",
        label=f"threshold {alarm.threshold:g} ({alarm.comparison_operator})",
    )
    axis.set_ylabel(alarm.metric_name)
    axis.set_xticks(positions, labels, rotation=45, ha="right")
    handles, names = axis.get_legend_handles_labels()
    drift = [r.metrics.get("DriftScore") for r in results]
    if any(v is not None for v in drift):
        second = axis.twinx()
        second.plot(
            positions,
            [v if v is not None else float("nan") for v in drift],
            marker="s",
            color="tab:orange",
            alpha=0.8,
            label="DriftScore (largest feature PSI)",
        )
        second.set_ylabel("DriftScore (PSI)")
        more_handles, more_names = second.get_legend_handles_labels()
        handles, names = handles + more_handles, names + more_names
    from matplotlib.patches import Patch

    handles.append(Patch(color="tab:red", alpha=0.15))
    names.append(f"{logical_id} in ALARM")
    axis.legend(handles, names, loc="upper left", fontsize=8)
    axis.set_title(f"{alarm.name}: one batch per {alarm.period_seconds} s alarm period")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def print_alert(alert: Alert) -> None:
    if alert.channel == "email":
        _out(f"  ✉  email to {alert.recipient}: {alert.subject}   [{alert.path}]")
    else:
        _out(f"  💬 Slack message received by the local webhook ({alert.state} {alert.alarm}):")
        for line in alert.body.splitlines():
            _out(f"     | {line}")


def listener(kind: str, payload: Any) -> None:
    """What the local cloud does, narrated as it happens."""
    if kind == "alarm":
        evaluation = payload.evaluation
        # An alarm's first evaluation is news only when it is not a plain "all is well".
        routine = evaluation.previous_state == "INSUFFICIENT_DATA" and evaluation.state == "OK"
        _out(
            f"  ⏰ {payload.alarm.name}: {evaluation.previous_state} -> {evaluation.state}"
            + ("" if routine else f" ({evaluation.reason})")
        )
    elif kind == "alert":
        print_alert(payload)
    elif kind == "warning":
        _out(f"  ! {payload}")


def run_demo(
    out_dir: Path | None = None,
    *,
    template_path: Path = DEFAULT_TEMPLATE,
    model_dir: Path = DEFAULT_MODEL_DIR,
    samples: Path = SAMPLES,
    labels_delay_periods: int = 0,
    retraining_samples: Path | None = RETRAINING_SAMPLES,
) -> int:
    """The sample story; with ``labels_delay_periods`` each batch's labels arrive that many alarm
    periods after it (the late-label story) instead of all before the first batch. Then, unless
    ``retraining_samples`` is None, act two in a fresh stack: retraining closes the loop."""
    started = time.perf_counter()
    out_dir = (out_dir or Path("out") / f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ensure_sample_model(model_dir, template_path)
    # Batch 12 is Parquet (the upstream's new export): every format goes through one pipeline.
    batches = sorted(
        path for path in (samples / "batches").glob("batch-*") if path.suffix in (".csv", ".parquet")
    )

    cloud = LocalCloud(
        out_dir=out_dir,
        template_path=template_path,
        model_dir=model_dir,
        # The demo shows monitoring and alerting, with the timeline and alert count the README
        # documents: it runs without the retrain function (README, "Retraining").
        parameters={"AlertEmail": DEMO_EMAIL, "RetrainOnAlarm": ""},
        clock=VirtualClock(datetime.now(UTC)),
        slack_receiver=True,
        listener=listener,
    )
    with cloud:
        bucket = cloud.bucket_for("incoming/")
        _out(
            f"Local cloud on {cloud.endpoint_url}: stack {cloud.stack_name} from {template_path.name} "
            f"({len(cloud.stack.resources)} resources; bucket {bucket})"
        )
        subscriptions = cloud.clients.sns.list_subscriptions()["Subscriptions"]
        _out(
            "Alerts go to: "
            + ", ".join(f"{s['Protocol']} {s['Endpoint'].split(':')[-1]}" for s in subscriptions)
            + ("" if cloud.webhook else "  (no Slack notifier in the template yet)")
        )
        if not labels_delay_periods:
            _out(f"Loading {samples / 'actuals.csv'} through the actuals function ...")
        backtest = Backtest(
            cloud,
            on_processed=lambda r: _out(
                f"[{r.index + 1:>2}/{len(batches)}] {r.key} @ {r.batch_time:%Y-%m-%d %H:%M}Z  {r.status}  "
                f"rows={r.rows} labeled={r.labeled_rows}  "
                + "  ".join(f"{k}={v:.3f}" for k, v in r.metrics.items() if k in _shown(cloud))
                + f"  ({r.seconds:.1f}s)"
            ),
            on_event=_narrate_label_loads,
        )
        if labels_delay_periods:
            results = _run_with_late_labels(cloud, backtest, batches, samples, labels_delay_periods)
        else:
            mark = time.perf_counter()
            backtest.load_actuals(samples / "actuals.csv")
            _out(
                f"  loaded in {time.perf_counter() - mark:.1f} s "
                f"(stack ready {mark - started:.1f} s after start)"
            )
            _out(
                f"Dropping {len(batches)} batches into s3://{bucket}/incoming/ "
                "(one per alarm period, virtual clock):"
            )
            results = backtest.run(batches)

        mark = time.perf_counter()
        _out("\nTimeline")
        timeline = timeline_text(cloud, results, final=bool(labels_delay_periods))
        _out(timeline)
        (out_dir / "timeline.txt").write_text(timeline + "\n", encoding="utf-8")
        skipped = {str((r.report.get("estimated_performance") or {}).get("skipped")) for r in results}
        for reason in sorted(skipped - {"None"}):
            _out(f"No estimated performance: {reason}")
        document = backtest.document()
        (out_dir / "timeline.json").write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
        chart = write_chart(cloud, results, out_dir / "chart.png")
        copied = backtest.copy_results(out_dir / "results")
        if cloud.webhook is not None:
            slack_dir = out_dir / "slack"
            slack_dir.mkdir(exist_ok=True)
            for number, request in enumerate(cloud.webhook.requests, start=1):
                (slack_dir / f"{number:03d}.json").write_bytes(request.body)
        _out(f"(reports, chart and results written in {time.perf_counter() - mark:.1f} s)")
    logs = out_dir / "logs"
    _out(
        f"\nAlerts delivered: {len(cloud.alerts)} "
        f"({sum(a.channel == 'email' for a in cloud.alerts)} email, "
        f"{sum(a.channel == 'slack' for a in cloud.alerts)} Slack)"
    )
    _out(f"Output: {out_dir}")
    _out(
        f"  chart.png{'' if chart else ' (no alarm to chart)'}, timeline.txt/json, outbox/ (emails), "
        f"results/ ({copied} files), logs/ ({', '.join(p.name for p in sorted(logs.glob('*.log')))})"
    )
    shutil.rmtree(out_dir / ".tmp", ignore_errors=True)
    if retraining_samples is not None:
        run_retraining_act(
            out_dir / "retraining",
            template_path=template_path,
            model_dir=model_dir,
            samples=retraining_samples,
        )
    _out(f"Demo finished in {time.perf_counter() - started:.1f} s")
    return 0


def run_retraining_act(
    out_dir: Path, *, template_path: Path, model_dir: Path, samples: Path = RETRAINING_SAMPLES
) -> list[BatchResult]:
    """Act two, the seed's story: a lasting change, the error alarm, a retrain on the labeled
    changed batches, the better model promoted at once (AutoPromote=true), and the batches after
    it scored by the new version with the error back under the threshold. The same functions and
    template as on AWS; the champion's own directory is never written (promotion publishes a layer
    version, which the local cloud mounts from its own folder)."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    batches = sorted(path for path in (samples / "batches").glob("batch-*") if path.suffix == ".csv")
    shown = samples.relative_to(PROJECT_ROOT) if samples.is_relative_to(PROJECT_ROOT) else samples
    _out(
        f"\nAct two: retraining closes the loop ({shown}). From batch 4 on the churn world changes "
        "for good; the retrain function answers QualityAlarm and, with AutoPromote=true, promotes a "
        "better model at once. The alarm fires on the first changed batch, which the retrain holds out "
        "to judge a challenger: with nothing changed to learn from yet it defers, and its hourly "
        "schedule retrains once the next batch's labels are in."
    )
    cloud = LocalCloud(
        out_dir=out_dir,
        template_path=template_path,
        model_dir=model_dir,
        parameters={
            "AlertEmail": DEMO_EMAIL,
            "RetrainOnAlarm": "QualityAlarm",
            "AutoPromote": "true",
        },
        clock=VirtualClock(datetime.now(UTC)),
        slack_receiver=True,
        listener=listener,
    )
    with cloud:
        backtest = Backtest(
            cloud,
            on_processed=lambda r: _out(
                f"[{r.index + 1:>2}/{len(batches)}] {r.key} scored by model {r.model_version}  {r.status}  "
                + "  ".join(f"{k}={v:.3f}" for k, v in r.metrics.items() if k in _shown(cloud))
            ),
            on_event=_narrate_model_events,
        )
        backtest.load_actuals(samples / "actuals.csv")
        results = backtest.run(batches)
        timeline = timeline_text(cloud, results)
        _out("\nTimeline (act two)")
        _out(timeline)
        (out_dir / "timeline.txt").write_text(timeline + "\n", encoding="utf-8")
        document = backtest.document()
        (out_dir / "timeline.json").write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
        write_chart(cloud, results, out_dir / "chart.png")
        backtest.copy_results(out_dir / "results")
    _out(_retraining_outcome(results, document["model_events"], model_dir, samples))
    _out(f"Act two output: {out_dir}  ({time.perf_counter() - started:.1f} s)")
    shutil.rmtree(out_dir / ".tmp", ignore_errors=True)
    return results


def _narrate_model_events(period: PeriodResult, event: str) -> None:
    if event.startswith("model "):
        # Model records are looked for as each period ends, after its alarms were evaluated.
        _out(f"  🔁 {event} (end of period {period.index + 1})")


def _retraining_outcome(
    results: list[BatchResult], events: list[dict[str, Any]], model_dir: Path, samples: Path
) -> str:
    """What the promoted model scored, against what the champion gives on the very same rows."""
    promoted = next((e for e in events if e["event"] == "promoted"), None)
    if promoted is None:
        return "No model was promoted: " + (
            "; ".join(f"{e['event']}: {e.get('reason') or ''}" for e in events) or "no retrain happened"
        )
    after = [r for r in results if r.model_version == promoted["version"] and "ErrorRate" in r.metrics]
    if not after:
        return f"Model {promoted['version']} was promoted after the last batch."
    import numpy as np
    import pandas as pd

    from modelwatch.model_bundle import load_bundle

    champion = load_bundle(model_dir)
    actuals = pd.read_csv(samples / "actuals.csv").set_index(champion.metadata.id_column)
    target = actuals.columns[0]
    lines = [
        f"Promoted {promoted['version']} (holdout {promoted['holdout']['rows']} rows: "
        + ", ".join(
            f"{metric} {promoted['holdout']['champion'].get(metric, float('nan')):.3f} -> {value:.3f}"
            for metric, value in promoted["holdout"]["challenger"].items()
            if metric == "ErrorRate"
        )
        + "). The batches it scored, and what the old model gives on the same rows:"
    ]
    for result in after:
        frame = pd.read_csv(samples / "batches" / result.key.removeprefix("incoming/"))
        labels = actuals.loc[frame[champion.metadata.id_column], target].to_numpy()
        old = float(np.mean(champion.estimator.predict(frame[champion.metadata.feature_names]) != labels))
        lines.append(
            f"  {result.key.removeprefix('incoming/')}: ErrorRate {result.metrics['ErrorRate']:.3f} "
            f"(old model {old:.3f})"
        )
    return "\n".join(lines)


def _run_with_late_labels(
    cloud: LocalCloud, backtest: Backtest, batches: list[Path], samples: Path, delay: int
) -> list[BatchResult]:
    bucket = cloud.bucket_for("incoming/")
    _out(
        f"Dropping {len(batches)} batches into s3://{bucket}/incoming/ (one per alarm period, virtual "
        f"clock). Their labels arrive {delay} period(s) later, through the actuals function: until "
        "then a batch's error is not known, only estimated from the model's confidence and its "
        "inputs' drift; the error counts when the labels come."
    )
    if not _labels_rescore(cloud):
        _out(
            "  (this template has no function on the actuals table's stream: labels that arrive after "
            "their batch are stored, but no batch's metrics are recomputed)"
        )
    return backtest.run(batches, actuals=[samples / "actuals.csv"], labels_delay_periods=delay)


def _labels_rescore(cloud: LocalCloud) -> bool:
    """Whether a function of the stack gets the actuals table's stream records (the late-label join)."""
    resources = cloud.stack.resources
    table = resources["ActualsTable"].ref if "ActualsTable" in resources else None
    return any(mapping.table_name == table for mapping in cloud.stack.stream_mappings)


def _narrate_label_loads(period: PeriodResult, event: str) -> None:
    if event.startswith("loaded labels of ") and "no batch" not in event:
        _out(f"  🏷  {event.removeprefix('loaded ')} arrive at {period.start:%H:%M}Z")


def _shown(cloud: LocalCloud) -> set[str]:
    return {alarm.metric_name for alarm in cloud.stack.alarms.values()} | {"DriftScore"}
