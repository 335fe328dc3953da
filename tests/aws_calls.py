"""The AWS requests a function really makes, as IAM actions on resources, and what its
policy in template.yaml grants, for comparing the two.

Requests are recorded through botocore's ``before-parameter-build`` event, registered on
boto3's default session: modelwatch.aws.client builds every client from it (those handed to
Powertools' idempotency and secrets utilities included), and each client copies the
session's handlers when it is created. A request through a client of another session would
go unrecorded, and its grant would then show as unused.

Operations map to IAM actions as the Service Authorization Reference lists them: the action
is usually the operation's name under the service's prefix, except for the Amazon S3
operations in S3_ACTIONS (ListObjectsV2 is authorised by s3:ListBucket, a read of a given
version by s3:GetObjectVersion).
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3

from modelwatch.aws import reset_clients
from tests.template_resources import condition_holds, resource

ACCOUNT_ID = "123456789012"
# Service (botocore's name) -> IAM service prefix. CloudWatch's endpoint prefix is
# "monitoring", its IAM prefix "cloudwatch"; botocore's service name matches the latter.
IAM_PREFIXES = {
    "s3": "s3",
    "dynamodb": "dynamodb",
    "cloudwatch": "cloudwatch",
    "secretsmanager": "secretsmanager",
    "sns": "sns",
    "lambda": "lambda",
}
# Amazon S3 operations authorised by an action of another name: (operation, versioned) -> action.
S3_ACTIONS = {
    ("GetObject", True): "s3:GetObjectVersion",
    ("HeadObject", False): "s3:GetObject",
    ("HeadObject", True): "s3:GetObjectVersion",
    ("ListObjects", False): "s3:ListBucket",
    ("ListObjectsV2", False): "s3:ListBucket",
    ("ListObjectVersions", False): "s3:ListBucketVersions",
}


@dataclass(frozen=True)
class Grant:
    """One IAM action on one resource pattern (IAM's * and ? wildcards)."""

    action: str
    resource: str

    def allows(self, other: Grant) -> bool:
        return self.action == other.action and fnmatch.fnmatchcase(other.resource, self.resource)


@dataclass(frozen=True)
class AwsCall:
    service: str
    operation: str
    params: Mapping[str, Any]

    def grants_needed(self, region: str) -> list[Grant]:
        """What IAM must allow for this request: an action on each resource it touches."""
        prefix = IAM_PREFIXES.get(self.service)
        if prefix is None:
            raise KeyError(f"{self.service}.{self.operation}: add the service's IAM prefix to IAM_PREFIXES")
        if self.service == "s3":
            versioned = bool(self.params.get("VersionId"))
            action = S3_ACTIONS.get((self.operation, versioned), f"s3:{self.operation}")
            key = self.params.get("Key")
            bucket = self.params["Bucket"]
            return [
                Grant(action, f"arn:aws:s3:::{bucket}/{key}" if key is not None else f"arn:aws:s3:::{bucket}")
            ]
        action = f"{prefix}:{self.operation}"
        if self.service == "dynamodb":
            tables = self.params.get("RequestItems") or {self.params["TableName"]: None}
            return [
                Grant(action, f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{table}") for table in tables
            ]
        if self.service == "secretsmanager":
            # A secret's ARN ends in "-" and six random characters.
            name = self.params["SecretId"]
            return [Grant(action, f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{name}-a1B2c3")]
        if self.service == "sns":
            return [Grant(action, self.params["TopicArn"])]
        if self.service == "lambda":
            # Functions by name; a layer by name (publishing) or a version of it (reading).
            base = f"arn:aws:lambda:{region}:{ACCOUNT_ID}"
            if "FunctionName" in self.params:
                return [Grant(action, f"{base}:function:{self.params['FunctionName']}")]
            layer = f"{base}:layer:{self.params['LayerName']}"
            version = self.params.get("VersionNumber")
            return [Grant(action, layer if version is None else f"{layer}:{version}")]
        if self.operation == "DescribeAlarms":
            return [
                Grant(action, f"arn:aws:cloudwatch:{region}:{ACCOUNT_ID}:alarm:{name}")
                for name in self.params.get("AlarmNames") or ["*"]
            ]
        return [Grant(action, "*")]  # PutMetricData, GetMetricData: no resource-level permissions


@contextlib.contextmanager
def recorded_aws_calls() -> Iterator[list[AwsCall]]:
    """Every AWS request made by clients created inside the block, in order.

    Cached modelwatch clients are dropped on entry, so the code builds recorded ones;
    clients created before the block (a test's own) are not recorded.
    """
    calls: list[AwsCall] = []
    recording = True

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        if recording:
            calls.append(AwsCall(model.service_model.service_name, model.name, dict(params)))

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    handler_id = "tests.aws_calls.record"
    session.events.register("before-parameter-build", record, unique_id=handler_id)
    reset_clients()
    try:
        yield calls
    finally:
        recording = False  # clients made inside the block keep their copy of the handler
        session.events.unregister("before-parameter-build", unique_id=handler_id)
        reset_clients()


def policy_grants(logical_id: str, names: Mapping[str, str], region: str) -> list[Grant]:
    """The function's policy statements in template.yaml as grants, with Ref and GetAtt resolved
    to the names the test gave the resources and parameters (``names``); any other
    substitution (a stack-derived suffix) becomes a wildcard.
    """
    grants = []
    for policy in resource(logical_id)["Properties"]["Policies"]:
        for statement in policy["Statement"]:
            if set(statement) == {"Fn::If"}:
                # Granted under a template condition: only when the test's names say it holds.
                condition, granted, _ = statement["Fn::If"]
                if not condition_holds(condition, names):
                    continue
                statement = granted
            assert statement["Effect"] == "Allow", statement["Sid"]
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            for action in actions:
                grants += [Grant(action, _arn(value, names, region)) for value in resources]
    return grants


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _arn(value: Any, names: Mapping[str, str], region: str) -> str:
    if isinstance(value, str):
        return value
    if set(value) == {"Ref"} and resource(value["Ref"])["Type"] == "AWS::SNS::Topic":
        return names[value["Ref"]]  # a topic's Ref is its ARN
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        if attribute == "StreamArn":  # read by Lambda's event source mapping, not by the code
            return _resource_arn(logical_id, names, region) + "/stream/*"
        assert attribute == "Arn", value
        return _resource_arn(logical_id, names, region)
    if "Fn::Sub" in value:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        arn = re.sub(r"\$\{([^}]+)\}", lambda match: _substitute(match.group(1), names, region), text)
        if arn.startswith("arn:aws:s3:::"):
            # The template names the bucket from the stack's id; the tests' buckets have their own names.
            arn = re.sub(r"^arn:aws:s3:::[^/]*", "arn:aws:s3:::" + names.get("IngestBucket", "*"), arn)
        return arn
    raise ValueError(f"{value}: teach tests/aws_calls.py this resource form")


def _substitute(token: str, names: Mapping[str, str], region: str) -> str:
    pseudo = {"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": ACCOUNT_ID}
    if token in pseudo:
        return pseudo[token]
    if token.endswith(".Arn"):
        return _resource_arn(token.removesuffix(".Arn"), names, region)
    return names.get(token, "*")


def _resource_arn(logical_id: str, names: Mapping[str, str], region: str) -> str:
    kind = resource(logical_id)["Type"]
    if kind == "AWS::DynamoDB::Table":
        return f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{names[logical_id]}"
    if kind == "AWS::S3::Bucket":
        return f"arn:aws:s3:::{names[logical_id]}"
    if kind == "AWS::KMS::Key":
        return f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{names.get(logical_id, '*')}"
    if kind == "AWS::SQS::Queue":
        return f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{names.get(logical_id, '*')}"
    raise ValueError(f"{logical_id} ({kind}): teach tests/aws_calls.py its ARN")


def ungranted(calls: list[AwsCall], grants: list[Grant], region: str) -> list[str]:
    """The requests no grant allows, as 'Service.Operation: action on resource'."""
    return [
        f"{call.service}.{call.operation}: {needed.action} on {needed.resource}"
        for call in calls
        for needed in call.grants_needed(region)
        if not any(grant.allows(needed) for grant in grants)
    ]


def unused(calls: list[AwsCall], grants: list[Grant], region: str) -> list[Grant]:
    """The grants no recorded request needed."""
    needed = [grant for call in calls for grant in call.grants_needed(region)]
    return [grant for grant in grants if not any(grant.allows(request) for request in needed)]
