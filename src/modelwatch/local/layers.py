"""The model layer in the local cloud: promotion through the Lambda API, as in AWS.

The functions run in this process (modelwatch.local.runtime), not in moto's Lambda. So that
promotion and rollback (modelwatch.promotion) work here through the same Lambda calls as in
AWS, the stack's layer versions and functions are also registered in moto's Lambda, which
keeps their configuration only (its code zips are placeholders, never run):

- each LayerVersion of the template is published once (version 1, the ARN the stack's
  references resolve to); the model layer's version 1 is the --model-dir directory, as
  `sam build` would package it;
- each function is created with the layers the template gives it.

Before each invocation the runtime asks moto for the function's configuration. When its
model layer version is not the one the warm instance loaded (a promotion or rollback
switched it), the invocation is a cold start with /opt/model mapped to that version's
content. moto keeps a layer version's bytes but serves no download URL (its Location is
"s3://"), so the content is read from the zip the version was published from, which the
description names (modelwatch.promotion writes "... from s3://bucket/models/V/layer.zip"),
checked against the version's CodeSha256, and extracted under <out>/layers/.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import boto3

from modelwatch.local.runtime import LOCAL_CREDENTIALS, FunctionSpec
from modelwatch.promotion import layer_version

LOCAL_ROLE_NAME = "modelwatch-local-function-role"
_ASSUME_ROLE = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
    '"Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
)
_FROM_S3 = re.compile(r"s3://([^/\s]+)/(\S+)")


def _placeholder_zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("LOCAL-CLOUD.txt", text + "\n")
    return buffer.getvalue()


def _clients(endpoint_url: str, region: str) -> tuple[Any, Any]:
    session = boto3.session.Session()
    kwargs = {
        "endpoint_url": endpoint_url,
        "region_name": region,
        "aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
    return session.client("lambda", **kwargs), session.client("iam", **kwargs)


class ModelLayers:
    """Which model directory each function's model layer version stands for."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        s3: Any,
        layer_name: str,
        initial_model_dir: Path,
        extract_root: Path,
    ) -> None:
        self.lambda_client, self.iam = _clients(endpoint_url, region)
        self.s3 = s3
        self.layer_name = layer_name
        self.initial_model_dir = initial_model_dir
        self.extract_root = extract_root
        self._dirs: dict[str, Path] = {}

    def register(self, layers: list[dict[str, Any]], functions: dict[str, FunctionSpec]) -> None:
        """Publish the stack's layer versions and create its functions in moto's Lambda.

        ``layers``: each LayerVersion's LayerName, expected ARN and properties."""
        for layer in layers:
            properties = layer["properties"]
            published = self.lambda_client.publish_layer_version(
                LayerName=layer["name"],
                Description=str(properties.get("Description", ""))[:256],
                Content={"ZipFile": _placeholder_zip(f"{layer['name']}: served from this machine")},
                CompatibleRuntimes=list(properties.get("CompatibleRuntimes") or []),
                CompatibleArchitectures=list(properties.get("CompatibleArchitectures") or []),
            )
            if published["LayerVersionArn"] != layer["arn"]:
                raise RuntimeError(
                    f"moto published {published['LayerVersionArn']}, the stack refers to {layer['arn']}"
                )
            if layer["name"] == self.layer_name:
                self._dirs[layer["arn"]] = self.initial_model_dir
        role = self.iam.create_role(RoleName=LOCAL_ROLE_NAME, AssumeRolePolicyDocument=_ASSUME_ROLE)
        for spec in functions.values():
            self.lambda_client.create_function(
                FunctionName=spec.name,
                Runtime="python3.13",
                Role=role["Role"]["Arn"],
                Handler=spec.handler,
                Code={"ZipFile": _placeholder_zip(f"{spec.name}: runs in the local cloud's process")},
                Layers=list(spec.layers),
                Timeout=spec.timeout_seconds,
                MemorySize=spec.memory_mb,
            )

    def model_dir_for(self, function_name: str) -> Path | None:
        """The directory mapped onto /opt/model for the function now; None without a model layer."""
        configuration = self.lambda_client.get_function_configuration(FunctionName=function_name)
        arns = [layer["Arn"] for layer in configuration.get("Layers", [])]
        arn = next((arn for arn in arns if arn.split(":")[6:7] == [self.layer_name]), None)
        if arn is None:
            return None
        if arn not in self._dirs:
            self._dirs[arn] = self._extract(arn)
        return self._dirs[arn]

    def _extract(self, arn: str) -> Path:
        version = layer_version(self.lambda_client, arn)
        source = _FROM_S3.search(version.get("Description", ""))
        if source is None:
            raise RuntimeError(
                f"{arn}: the local cloud serves a model layer version from the zip its description "
                f"names (s3://bucket/key), and this one names none: {version.get('Description')!r}"
            )
        body = self.s3.get_object(Bucket=source.group(1), Key=source.group(2))["Body"].read()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        if digest != version["Content"]["CodeSha256"]:
            raise RuntimeError(
                f"{arn}: s3://{source.group(1)}/{source.group(2)} changed since the version was published "
                "(its SHA-256 differs from the layer version's CodeSha256)"
            )
        target = self.extract_root / f"{self.layer_name}-{version['Version']}"
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            archive.extractall(target)
        return target / "model"
