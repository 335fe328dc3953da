"""Retraining's announcement on the alert topic: one text for people, recognisable by machines.

The alert topic carries CloudWatch's alarm messages (JSON) and these announcements (plain
text, so the email subscription shows them as they are). Every announcement begins with
ANNOUNCEMENT_PREFIX: the Slack notifier posts such a message as text instead of dropping it
as "not an alarm", and the retrain function, subscribed to the same topic, ignores it.

Pure: built from a decision's dict (modelwatch.retraining.RetrainDecision.as_dict), or from a
promotion or rollback record (modelwatch.promotion).
"""

from __future__ import annotations

from typing import Any

ANNOUNCEMENT_PREFIX = "[modelwatch] Retraining"
# SNS limits a subject to 100 characters.
_SUBJECT_MAX_CHARS = 100
# A Slack section's text holds at most 3,000 characters.
_SLACK_SECTION_MAX_CHARS = 3000

_HEADLINES = {
    "candidate": "candidate {challenger_version} beats {champion_version}, awaiting approval",
    "not_better": "the challenger is not better than {champion_version}; nothing changes",
    "refused": "refused, {champion_version} stays",
    "deferred": "deferred until the change can be learned, {champion_version} stays",
}


def is_announcement(message: str) -> bool:
    return message.startswith(ANNOUNCEMENT_PREFIX)


def _headline(decision: dict[str, Any]) -> str:
    if decision["decision"] == "candidate" and decision.get("promotion"):
        return "candidate {challenger_version} beats {champion_version}, promoted".format(**decision)
    return _HEADLINES[decision["decision"]].format(**decision)


def announcement_subject(decision: dict[str, Any]) -> str:
    text = f"modelwatch retraining {decision['model_name']}: {_headline(decision)}"
    return text if len(text) <= _SUBJECT_MAX_CHARS else text[: _SUBJECT_MAX_CHARS - 1] + "…"


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def retrain_announcement(decision: dict[str, Any]) -> str:
    """The text email readers get, and Slack's message is made of."""
    metric = decision["quality_metric"]
    lines = [
        f"{ANNOUNCEMENT_PREFIX} {decision['model_name']}: {_headline(decision)}",
        "",
        f"Decision: {decision['status']} - {decision['reason']}",
        f"Champion version: {decision['champion_version']}",
    ]
    if decision.get("challenger_version"):
        lines.append(f"Challenger version: {decision['challenger_version']}")
    trigger = decision["trigger"]
    if trigger.get("kind") == "alarm":
        lines.append(
            f"Trigger: {trigger['alarm']} entered ALARM at {trigger['state_change_time']}; "
            f"degradation began {trigger['degradation_start']}"
        )
        if trigger.get("deferred_attempt"):
            lines[-1] += f"; retried (deferred retrain, attempt {trigger['deferred_attempt']})"
    else:
        lines.append("Trigger: on demand (modelwatch model retrain)")
    window = decision.get("window") or {}
    if window:
        lines.append(
            f"Labeled window: {window['labeled_rows']} labeled rows in {window['batches']} batches, "
            f"last {window['days']} days"
        )
    holdout = decision.get("holdout") or {}
    if holdout:
        lines.append(
            f"Holdout: the newest {holdout['rows']} labeled rows ({holdout['batches']} batches, "
            f"{holdout['from']} to {holdout['to']})"
        )
    for trained in decision.get("windows") or []:
        won = " <- won" if trained["name"] == decision.get("winning_window") else ""
        result = (
            f"skipped: {trained['skipped']}"
            if trained.get("skipped")
            else f"{metric} {_number(trained['quality'])}"
        )
        lines.append(
            f"Training window '{trained['name']}' from {trained['start']} "
            f"({trained['rows']} rows): {result}{won}"
        )
    if decision.get("champion_metrics"):
        lines.append(
            f"{metric} on the holdout ({decision['direction']}): "
            f"champion {_number(decision['champion_quality'])}, "
            f"challenger {_number(decision['challenger_quality'])}"
        )
        challenger = decision.get("challenger_metrics") or {}
        if challenger:
            pairs = ", ".join(
                f"{name} {_number(value)} -> {_number(challenger.get(name))}"
                for name, value in sorted(decision["champion_metrics"].items())
            )
            lines.append(f"All metrics, champion -> challenger: {pairs}")
    if decision.get("candidate_uri"):
        lines.append(f"Candidate model directory: {decision['candidate_uri']}")
        if decision.get("new_trusted_types"):
            lines.append(
                "Check before approving: the candidate's model file holds types the champion's did not: "
                + ", ".join(decision["new_trusted_types"])
            )
        promotion = decision.get("promotion")
        if promotion:
            lines.append(
                f"Promoted at once (AutoPromote): the functions serve {promotion['to_version']} from "
                f"{promotion['layer_version_arn']}; to return to {promotion['from_version']}: "
                "modelwatch model rollback"
            )
            lines.append(f"Promotion record: {promotion['record_uri']}")
        elif decision.get("promotion_error"):
            lines.append(f"AutoPromote failed: {decision['promotion_error']}")
            if not decision.get("new_trusted_types"):
                # It may have failed after writing models/champion.json, with some functions
                # switched: promoting the same version again finishes the switch.
                lines.append(
                    "Some functions may already serve it: check with `modelwatch model champion`; "
                    "running the promote command below finishes an interrupted promotion, and "
                    "ChampionMismatch flags a batch monitor that still serves another version"
                )
        if not promotion:
            lines.append(
                "Awaiting approval: review comparison.json, then promote it with: "
                + (
                    decision.get("promote_command")
                    or f"modelwatch model promote --version {decision['challenger_version']}"
                )
            )
    if decision.get("record_uri"):
        lines.append(f"Decision record: {decision['record_uri']}")
    return "\n".join(lines)


def announcement_slack_message(text: str) -> dict[str, Any]:
    """The announcement as a Slack message: its first line as the headline, the rest below."""
    headline, _, rest = text.partition("\n")
    escaped = [
        part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for part in (headline, rest)
    ]
    body = escaped[1].strip() or " "
    if len(body) > _SLACK_SECTION_MAX_CHARS:
        body = body[: _SLACK_SECTION_MAX_CHARS - 1] + "…"
    return {
        "text": headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escaped[0]}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
        ],
    }


# -- promotion and rollback (modelwatch.promotion records) ----------------------------------


def promotion_subject(record: dict[str, Any]) -> str:
    verb = "promoted" if record["event"] == "promoted" else "rolled back to"
    text = f"modelwatch {record.get('model_name') or 'model'}: {verb} {record['to_version']}"
    return text if len(text) <= _SUBJECT_MAX_CHARS else text[: _SUBJECT_MAX_CHARS - 1] + "…"


def promotion_announcement(record: dict[str, Any]) -> str:
    """A promotion or rollback, from its record: what serves now, what served before, why."""
    promoted = record["event"] == "promoted"
    verb = "promoted" if promoted else "rolled back to"
    lines = [
        f"{ANNOUNCEMENT_PREFIX} {record.get('model_name') or 'model'}: {verb} {record['to_version']} "
        f"(was {record['from_version']})",
        "",
        f"When: {record['time']}, by {record['by']}",
        f"Model layer version now served: {record['layer_version_arn']}",
        f"Model layer version before: {record['previous_layer_version_arn']}",
    ]
    holdout = record.get("holdout") or {}
    if holdout.get("champion") or holdout.get("challenger"):
        old, new = (holdout.get("champion") or {}), (holdout.get("challenger") or {})
        pairs = ", ".join(
            f"{name} {_number(value)} -> {_number(new.get(name))}" for name, value in sorted(old.items())
        )
        lines.append(
            f"On the holdout ({holdout.get('rows')} rows), {record['from_version']} -> "
            f"{record['to_version']}: {pairs}"
        )
    lines.append(
        "The next batch is scored by it. A later `sam deploy` keeps it only with "
        "--parameter-overrides ModelLayerVersionArn=" + record["layer_version_arn"]
    )
    if promoted:
        lines.append("To return to the version before: modelwatch model rollback")
    if record.get("record_uri"):
        lines.append(f"Record: {record['record_uri']}")
    return "\n".join(lines)
