"""Promotion and rollback: which model version the stack's functions serve.

The model is served from the model layer (mounted at /opt/model), so switching the model is
switching the functions' model layer version, the way `sam deploy` would, without a deploy:

1. promote version V: the candidate directory s3://<bucket>/models/V/ (retraining wrote it)
   is zipped in the layer's layout (``model/<file>``: Lambda extracts a layer under /opt, see
   layers/model/Makefile) to models/V/layer.zip, and published as a new version of the model
   layer (PublishLayerVersion from S3; its description names the zip);
2. the champion pointer ``models/champion.json`` is written conditionally (If-Match on the
   ETag read at the start, If-None-Match for the first promotion): of two promoters that
   interleave, the second fails before it touches a function;
3. every function that has the model layer (``Deployment.function_names``) gets the new
   layer version ARN in place of the old one, its other layers kept; Lambda applies it
   asynchronously, so each is waited for (LastUpdateStatus Successful). The next invocation
   is a cold start that loads the new model;
4. a record under ``models/promotions/<UTC time>-<event>-<version>.json``: when, by whom,
   from which to which version and layer version, and the holdout scores.

Rollback is the same switch back to the layer version of the champion before (layer
versions are immutable and stay until deleted); the pointer keeps the earlier champions as a
stack, so a second rollback goes one further back. Every promotion and rollback is announced
on the alert topic when one is configured.

A later `sam deploy` sets the functions' layers from the template again: the template's
ModelLayerVersionArn parameter (``modelwatch model champion --layer-arn``) keeps the champion,
and the batch monitor reports and publishes ChampionMismatch when the model it loaded is not
the pointer's (modelwatch.monitor).
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from modelwatch.alerts.announcement import promotion_announcement, promotion_subject
from modelwatch.config import MODELS_PREFIX

logger = logging.getLogger(__name__)

CHAMPION_KEY = f"{MODELS_PREFIX}champion.json"
PROMOTIONS_PREFIX = f"{MODELS_PREFIX}promotions/"
LAYER_ZIP = "layer.zip"
LAYER_ROOT = "model/"  # /opt/model: Lambda extracts a layer's zip under /opt
PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
# Files of a candidate's directory that are no part of the model directory the functions load.
_NOT_IN_LAYER = frozenset({LAYER_ZIP})
_CONDITION_LOST = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class PromotionError(Exception):
    """A promotion or rollback cannot be done; the message says why and what to do."""


class PromotionConflict(PromotionError):
    """models/champion.json changed while this promotion ran: someone else promoted."""


@dataclass(frozen=True)
class Deployment:
    """Where the model is served from: the stack's bucket, model layer and its functions."""

    bucket: str
    layer_name: str  # the ModelLayer's LayerName (<stack>-model)
    function_names: tuple[str, ...]  # every function with the model layer
    alert_topic_arn: str = ""


def read_champion_pointer(s3: Any, bucket: str) -> tuple[dict[str, Any] | None, str | None]:
    """models/champion.json and its ETag; (None, None) before the first promotion."""
    try:
        answer = s3.get_object(Bucket=bucket, Key=CHAMPION_KEY)
    except ClientError as problem:
        if problem.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None, None
        raise
    return json.loads(answer["Body"].read()), answer["ETag"]


def layer_version(lambda_client: Any, arn: str) -> dict[str, Any]:
    """GetLayerVersion of a layer version ARN (by name and number: moto has no GetLayerVersionByArn)."""
    parts = arn.split(":")
    return dict(lambda_client.get_layer_version(LayerName=parts[6], VersionNumber=int(parts[7])))


def functions_with_layer(lambda_client: Any, layer_name: str) -> tuple[str, ...]:
    """The names of the account's functions (in the client's region) with a version of the layer."""
    found = []
    for page in lambda_client.get_paginator("list_functions").paginate():
        for function in page.get("Functions", []):
            if any(_is_model_layer(layer["Arn"], layer_name) for layer in function.get("Layers", [])):
                found.append(function["FunctionName"])
    return tuple(sorted(found))


def _now() -> datetime:
    return datetime.now(UTC)


def _is_model_layer(arn: str, layer_name: str) -> bool:
    """arn:aws:lambda:<region>:<account>:layer:<name>:<version>"""
    parts = arn.split(":")
    return len(parts) == 8 and parts[5] == "layer" and parts[6] == layer_name


class Promoter:
    """Promotes and rolls back with the given clients; ``by`` names who asked (records say it)."""

    def __init__(
        self,
        deployment: Deployment,
        *,
        s3: Any,
        lambda_client: Any,
        sns: Any = None,
        clock: Callable[[], datetime] = _now,
        wait_delay_seconds: int = 2,
    ) -> None:
        self.deployment = deployment
        self.s3 = s3
        self.lambda_client = lambda_client
        self.sns = sns
        self.clock = clock
        self.wait_delay_seconds = wait_delay_seconds

    # -- reading ----------------------------------------------------------------------------

    def champion(self) -> tuple[dict[str, Any] | None, str | None]:
        """The pointer and its ETag; (None, None) before the first promotion."""
        return read_champion_pointer(self.s3, self.deployment.bucket)

    def history(self) -> list[dict[str, Any]]:
        """Every promotion and rollback record, oldest first (the keys sort by time)."""
        records = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.deployment.bucket, Prefix=PROMOTIONS_PREFIX):
            for item in page.get("Contents", []):
                records.append(self._json(item["Key"]) | {"record_key": item["Key"]})
        return sorted(records, key=lambda record: record["record_key"])

    def served_layer(self) -> str:
        """The model layer version ARN the functions serve now (the first function's; a
        function that differs is switched too by the next promotion or rollback)."""
        if not self.deployment.function_names:
            raise PromotionError(
                "no function to switch: name the functions with the model layer (--functions), or "
                "check --layer-name (stack output ModelLayerName)"
            )
        function = self.deployment.function_names[0]
        return self._model_layer_of(self._configuration(function), function)

    def _unswitched(self, layer_arn: str) -> list[str]:
        """The functions whose model layer is not ``layer_arn``."""
        return [
            function
            for function in self.deployment.function_names
            if self._model_layer_of(self._configuration(function), function) != layer_arn
        ]

    def _json(self, key: str) -> dict[str, Any]:
        return json.loads(self.s3.get_object(Bucket=self.deployment.bucket, Key=key)["Body"].read())

    def _configuration(self, function: str) -> dict[str, Any]:
        return self.lambda_client.get_function_configuration(FunctionName=function)

    def _model_layer_of(self, configuration: dict[str, Any], function: str) -> str:
        arns = [layer["Arn"] for layer in configuration.get("Layers", [])]
        found = [arn for arn in arns if _is_model_layer(arn, self.deployment.layer_name)]
        if not found:
            raise PromotionError(
                f"function {function} has no version of the model layer {self.deployment.layer_name!r} "
                f"(its layers: {arns or 'none'}): is it a function of this stack?"
            )
        return found[0]

    # -- promote ----------------------------------------------------------------------------

    def promote(self, version: str, by: str) -> dict[str, Any]:
        """Serve candidate ``version`` from now on; returns the record."""
        comparison = self._candidate_comparison(version)
        pointer, etag = self.champion()
        if pointer is not None and pointer["version"] == version:
            return self._complete(pointer, comparison, by)
        served = self.served_layer()
        current = {
            "version": pointer["version"] if pointer else comparison.get("champion_version"),
            "layer_version_arn": served,
        }
        layer_arn = self._publish_layer(version, served)
        now = self.clock()
        record_key = self._record_key(now, PROMOTED, version)
        earlier = [current, *(pointer or {}).get("earlier", [])]
        model_name = str(comparison.get("model_name", ""))
        self._write_pointer(version, layer_arn, now, record_key, earlier, etag, model_name)
        self._switch(layer_arn)
        record = self._promotion_record(comparison, version, by, now, current, layer_arn)
        return self._finish(record_key, record)

    def _complete(self, pointer: dict[str, Any], comparison: dict[str, Any], by: str) -> dict[str, Any]:
        """Promoting the pointer's champion again: refused, unless an earlier promotion wrote the
        pointer and then failed to switch some function (AWS refused, a timeout); then this
        finishes it, and writes the record that promotion could not."""
        layer_arn = pointer["layer_version_arn"]
        unswitched = self._unswitched(layer_arn)
        if not unswitched:
            raise PromotionError(
                f"{pointer['version']} is the champion already (since {pointer['since']}); nothing to promote"
            )
        logger.warning("completing an interrupted promotion", extra={"functions": unswitched})
        self._switch(layer_arn)
        current = (pointer.get("earlier") or [{"version": None, "layer_version_arn": None}])[0]
        since = datetime.fromisoformat(pointer["since"])
        record = self._promotion_record(comparison, pointer["version"], by, since, current, layer_arn)
        return self._finish(pointer["record"], record | {"completed_at": self.clock().isoformat()})

    def _promotion_record(
        self,
        comparison: dict[str, Any],
        version: str,
        by: str,
        now: datetime,
        current: dict[str, Any],
        layer_arn: str,
    ) -> dict[str, Any]:
        holdout = comparison.get("holdout") or {}
        return {
            "model_name": str(comparison.get("model_name", "")),
            "time": now.isoformat(),
            "event": PROMOTED,
            "by": by,
            "from_version": current["version"],
            "to_version": version,
            "layer_version_arn": layer_arn,
            "previous_layer_version_arn": current["layer_version_arn"],
            "holdout": {
                "rows": holdout.get("rows"),
                "champion": comparison.get("champion_metrics") or {},
                "challenger": comparison.get("challenger_metrics") or {},
            },
            "quality_metric": comparison.get("quality_metric"),
            "decision_record": comparison.get("record_uri"),
        }

    def _candidate_comparison(self, version: str) -> dict[str, Any]:
        """comparison.json of a complete candidate directory, or a PromotionError saying what is wrong."""
        prefix = f"{MODELS_PREFIX}{version}/"
        listed = self.s3.list_objects_v2(Bucket=self.deployment.bucket, Prefix=prefix)
        names = {item["Key"][len(prefix) :] for item in listed.get("Contents", [])}
        where = f"s3://{self.deployment.bucket}/{prefix}"
        if not names:
            raise PromotionError(
                f"no model version {version!r}: {where} is empty; the candidates are the versions "
                "whose retraining decision says 'candidate' (modelwatch model champion lists the history, "
                f"s3://{self.deployment.bucket}/{MODELS_PREFIX}decisions/ the decisions)"
            )
        missing = {"metadata.json", "comparison.json"} - names
        if missing:
            raise PromotionError(
                f"{where} is no complete candidate directory: {', '.join(sorted(missing))} missing "
                "(retraining writes metadata.json last; an interrupted write leaves it out)"
            )
        comparison = self._json(prefix + "comparison.json")
        if comparison.get("decision") != "candidate":
            raise PromotionError(
                f"{version} is not a candidate: its comparison.json says {comparison.get('decision')!r}"
            )
        return comparison

    def _publish_layer(self, version: str, served: str) -> str:
        """The candidate's directory as models/V/layer.zip, published as a model layer version
        with the served version's runtimes and architectures."""
        bucket, prefix = self.deployment.bucket, f"{MODELS_PREFIX}{version}/"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
            for item in sorted(listed.get("Contents", []), key=lambda item: item["Key"]):
                name = item["Key"][len(prefix) :]
                if "/" in name or name in _NOT_IN_LAYER:
                    continue
                body = self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                archive.writestr(LAYER_ROOT + name, body)
        zip_key = prefix + LAYER_ZIP
        self.s3.put_object(Bucket=bucket, Key=zip_key, Body=buffer.getvalue(), ContentType="application/zip")
        template = layer_version(self.lambda_client, served)
        published = self.lambda_client.publish_layer_version(
            LayerName=self.deployment.layer_name,
            # The local cloud finds a layer version's content by this URI (moto keeps no download URL).
            Description=f"modelwatch model {version} from s3://{bucket}/{zip_key}"[:256],
            Content={"S3Bucket": bucket, "S3Key": zip_key},
            CompatibleRuntimes=template.get("CompatibleRuntimes") or ["python3.13"],
            CompatibleArchitectures=template.get("CompatibleArchitectures") or ["arm64"],
        )
        return str(published["LayerVersionArn"])

    # -- roll back --------------------------------------------------------------------------

    def rollback(self, by: str) -> dict[str, Any]:
        """Serve the champion before the current one again; returns the record."""
        pointer, etag = self.champion()
        if pointer is None or not pointer.get("earlier"):
            raise PromotionError(
                "nothing to roll back to: no promotion is recorded "
                f"(s3://{self.deployment.bucket}/{CHAMPION_KEY} "
                + ("does not exist)" if pointer is None else "names no earlier champion)")
            )
        target, *earlier = pointer["earlier"]
        try:
            layer_version(self.lambda_client, target["layer_version_arn"])
        except ClientError as problem:
            raise PromotionError(
                f"cannot roll back to {target['version']}: its layer version {target['layer_version_arn']} "
                f"is gone ({problem.response.get('Error', {}).get('Code')}; a deploy deletes the layer "
                "version it replaces). Promote a candidate instead, or deploy that model"
            ) from None
        served = self.served_layer()
        now = self.clock()
        record_key = self._record_key(now, ROLLED_BACK, str(target["version"]))
        model_name = str(pointer.get("model_name", ""))
        self._write_pointer(
            target["version"], target["layer_version_arn"], now, record_key, earlier, etag, model_name
        )
        self._switch(target["layer_version_arn"])
        record = {
            "model_name": model_name,
            "time": now.isoformat(),
            "event": ROLLED_BACK,
            "by": by,
            "from_version": pointer["version"],
            "to_version": target["version"],
            "layer_version_arn": target["layer_version_arn"],
            "previous_layer_version_arn": served,
            "holdout": self._rollback_scores(pointer["version"], str(target["version"])),
        }
        return self._finish(record_key, record)

    def _rollback_scores(self, from_version: str, to_version: str) -> dict[str, Any] | None:
        """The holdout scores of the version returned to, as the comparison that promoted the
        version rolled back from measured them (it compared the two); None when unknown."""
        try:
            comparison = self._json(f"{MODELS_PREFIX}{from_version}/comparison.json")
        except ClientError:
            return None
        holdout = comparison.get("holdout") or {}
        if comparison.get("champion_version") == to_version:
            return {
                "rows": holdout.get("rows"),
                "champion": comparison.get("challenger_metrics") or {},  # the version left
                "challenger": comparison.get("champion_metrics") or {},  # the version returned to
            }
        return None

    # -- shared steps -----------------------------------------------------------------------

    def _record_key(self, now: datetime, event: str, version: str) -> str:
        return f"{PROMOTIONS_PREFIX}{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{event}-{version}.json"

    def _write_pointer(
        self,
        version: str,
        layer_arn: str,
        now: datetime,
        record_key: str,
        earlier: list[dict[str, Any]],
        etag: str | None,
        model_name: str,
    ) -> None:
        pointer = {
            "model_name": model_name,
            "version": version,
            "layer_version_arn": layer_arn,
            "since": now.isoformat(),
            "record": record_key,
            "earlier": earlier,  # the champions before, newest first: what rollback returns to
        }
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self._put_json(CHAMPION_KEY, pointer, **condition)
        except ClientError as problem:
            if problem.response.get("Error", {}).get("Code") not in _CONDITION_LOST:
                raise
            raise PromotionConflict(
                f"s3://{self.deployment.bucket}/{CHAMPION_KEY} changed while this ran: someone else "
                "promoted or rolled back at the same time. Nothing was switched by this run; see "
                "`modelwatch model champion`, then try again if still wanted"
            ) from None

    def _switch(self, layer_arn: str) -> None:
        """Every function of the deployment onto ``layer_arn``, its other layers kept."""
        waiter = self.lambda_client.get_waiter("function_updated")
        wait = {"Delay": self.wait_delay_seconds, "MaxAttempts": 150}
        for function in self.deployment.function_names:
            # An update still in progress (a deploy, an earlier switch) refuses another one.
            waiter.wait(FunctionName=function, WaiterConfig=wait)
            configuration = self._configuration(function)
            current = self._model_layer_of(configuration, function)
            layers = [
                layer_arn if layer["Arn"] == current else layer["Arn"] for layer in configuration["Layers"]
            ]
            self.lambda_client.update_function_configuration(FunctionName=function, Layers=layers)
            waiter.wait(FunctionName=function, WaiterConfig=wait)
            logger.info("model layer switched", extra={"function": function, "layer": layer_arn})

    def _finish(self, record_key: str, record: dict[str, Any]) -> dict[str, Any]:
        self._put_json(record_key, record)
        record = record | {"record_uri": f"s3://{self.deployment.bucket}/{record_key}"}
        if self.sns is not None and self.deployment.alert_topic_arn:
            self.sns.publish(
                TopicArn=self.deployment.alert_topic_arn,
                Subject=promotion_subject(record),
                Message=promotion_announcement(record),
            )
        return record

    def _put_json(self, key: str, document: dict[str, Any], **condition: str) -> None:
        self.s3.put_object(
            Bucket=self.deployment.bucket,
            Key=key,
            Body=(json.dumps(document, indent=2, default=str) + "\n").encode("utf-8"),
            ContentType="application/json",
            **condition,
        )
