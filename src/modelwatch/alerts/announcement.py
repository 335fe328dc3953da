"""Retraining's announcement on the alert topic: one text for people, recognisable by machines.

The alert topic carries CloudWatch's alarm messages (JSON) and these announcements (plain
text, so the email subscription shows them as they are). Every announcement begins with
ANNOUNCEMENT_PREFIX: the Slack notifier posts such a message as text instead of dropping it
as "not an alarm", and the retrain function, subscribed to the same topic, ignores it.

Pure: built from a decision's dict (modelwatch.retraining.RetrainDecision.as_dict).
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
}


def is_announcement(message: str) -> bool:
    return message.startswith(ANNOUNCEMENT_PREFIX)


def _headline(decision: dict[str, Any]) -> str:
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
        lines.append(
            "Promotion is not automated yet: review comparison.json, then publish the directory as the "
            "model layer and deploy."
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
