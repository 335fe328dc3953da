"""The local stack: template.yaml's resources created in the embedded AWS.

Resources are created with the service APIs, straight from the translated template's
definitions, rather than through moto's CloudFormation: moto's CloudFormation skips
alarms and bucket notifications and would need zipped code for the functions, while the
direct calls take well under a second and fail with the resource's own error. Names
follow CloudFormation: an explicit name when the template gives one, otherwise
<stack>-<LogicalId>-<SUFFIX> (the suffix is stable per stack name, so a restarted local
stack keeps its names).

Types with nothing to emulate locally are recorded as skipped: IAM roles and policies and
Lambda permissions (moto does not enforce them, and the bucket policy's
aws:SecureTransport condition would deny the plain-HTTP loopback endpoint if it did).

Longer than the package's usual ~450 lines on purpose: one short creator per resource
type of the template, read side by side; splitting them by service would scatter the
naming rule they all share.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelwatch.local.alarms import AlarmDefinition
from modelwatch.local.runtime import FunctionSpec
from modelwatch.local.streams import StreamMapping, StreamMappingError, mapping_from_template
from modelwatch.local.template import (
    LOCAL_ACCOUNT_ID,
    LOCAL_REGION,
    PARTITION,
    Resolver,
    TemplateError,
    check_rules,
    generated_name,
    load_template,
    resolve_parameters,
    stack_id_for,
    translate_sam,
)

SKIPPED_TYPES = {
    "AWS::IAM::Role": "IAM is not enforced locally",
    "AWS::IAM::Policy": "IAM is not enforced locally",
    "AWS::IAM::ManagedPolicy": "IAM is not enforced locally",
    "AWS::Lambda::Permission": "invocation permissions are not enforced locally",
    "AWS::S3::BucketPolicy": "bucket policies are not enforced locally (and SecureTransport would deny "
    "the HTTP loopback endpoint)",
    "AWS::SNS::TopicPolicy": "topic policies are not enforced locally",
    "AWS::SQS::QueuePolicy": "queue policies are not enforced locally",
}
# Lambda-side resources the local runtime implements itself.
RUNTIME_TYPES = (
    "AWS::Lambda::Function",
    "AWS::Lambda::LayerVersion",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Lambda::EventSourceMapping",
)


@dataclass(frozen=True)
class S3Trigger:
    """One LambdaConfiguration of a bucket's NotificationConfiguration."""

    bucket: str
    function_logical_id: str
    configuration_id: str
    events: tuple[str, ...]
    prefix: str
    suffix: str

    def matches(self, key: str, event_name: str = "ObjectCreated:Put") -> bool:
        if not (key.startswith(self.prefix) and key.endswith(self.suffix)):
            return False
        for pattern in self.events:
            pattern = pattern.removeprefix("s3:")
            if pattern == event_name or (pattern.endswith(":*") and event_name.startswith(pattern[:-1])):
                return True
        return False


@dataclass(frozen=True)
class Schedule:
    """An EventBridge Scheduler schedule that invokes a function of the template."""

    name: str
    function_logical_id: str
    every_seconds: int  # rate(N unit)
    input: str  # the event, as the target's Input

    @staticmethod
    def rate_seconds(expression: str) -> int:
        """Seconds between runs of ``rate(N minute|minutes|hour|hours|day|days)``."""
        match = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", expression.strip())
        if match is None:
            raise TemplateError(
                f"schedule expression {expression!r}: only rate(N minutes|hours|days) runs locally"
            )
        return int(match.group(1)) * {"minute": 60, "hour": 3600, "day": 86_400}[match.group(2)]


@dataclass
class CreatedResource:
    logical_id: str
    type: str
    ref: Any
    attributes: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalStack:
    """What was created, by logical id, plus what the local runtime needs."""

    stack_name: str
    stack_id: str
    region: str
    account_id: str
    parameters: dict[str, str]
    resources: dict[str, CreatedResource]
    skipped: dict[str, str]
    functions: dict[str, FunctionSpec]
    s3_triggers: list[S3Trigger]
    alarms: dict[str, AlarmDefinition]  # by logical id
    outputs: dict[str, Any]
    stream_mappings: list[StreamMapping] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)

    def of_type(self, resource_type: str) -> list[CreatedResource]:
        return [r for r in self.resources.values() if r.type == resource_type]

    def name_of(self, logical_id: str) -> Any:
        return self.resources[logical_id].ref

    def alarm_logical_id(self, alarm_name: str) -> str | None:
        return next((lid for lid, alarm in self.alarms.items() if alarm.name == alarm_name), None)

    def triggers_for(self, bucket: str, key: str) -> list[S3Trigger]:
        return [t for t in self.s3_triggers if t.bucket == bucket and t.matches(key)]


class StackBuilder:
    def __init__(
        self,
        template_path: Path,
        overrides: dict[str, str],
        *,
        clients: Any,
        stack_name: str,
        project_root: Path,
        region: str = LOCAL_REGION,
        account_id: str = LOCAL_ACCOUNT_ID,
    ):
        self.template_path = template_path
        self.clients = clients
        self.stack_name = stack_name
        self.project_root = project_root
        self.region = region
        self.account_id = account_id
        self.stack_id = stack_id_for(stack_name, region=region, account_id=account_id)
        raw = load_template(template_path)
        self.parameters = resolve_parameters(raw, overrides)
        pseudo = {
            "AWS::AccountId": account_id,
            "AWS::Region": region,
            "AWS::StackName": stack_name,
            "AWS::StackId": self.stack_id,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
        }
        check_rules(raw, self.parameters, pseudo)  # before anything is created, as CloudFormation does
        self.template, self.code_paths = translate_sam(
            raw,
            self.parameters,
            region=region,
            account_id=account_id,
            stack_name=stack_name,
            stack_id=self.stack_id,
        )
        self.definitions: dict[str, dict[str, Any]] = self.template["Resources"]
        self.created: dict[str, CreatedResource] = {}
        self.skipped: dict[str, str] = {}
        self._creating: list[str] = []
        self.resolver = Resolver(
            parameters=self.parameters,
            pseudo={**pseudo, "AWS::NotificationARNs": []},
            conditions=self.template.get("Conditions") or {},
            mappings=self.template.get("Mappings") or {},
            ref=lambda logical_id: self._ensure(logical_id).ref,
            get_att=self._get_att,
        )

    # -- references ---------------------------------------------------------------------

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self._ensure(logical_id)
        if attribute not in resource.attributes:
            raise TemplateError(f"{logical_id} ({resource.type}) has no attribute {attribute} locally")
        return resource.attributes[attribute]

    def _active(self, logical_id: str) -> bool:
        condition = self.definitions[logical_id].get("Condition")
        return condition is None or self.resolver.condition(condition)

    def _ensure(self, logical_id: str) -> CreatedResource:
        if logical_id in self.created:
            return self.created[logical_id]
        if logical_id not in self.definitions:
            raise TemplateError(f"reference to {logical_id}, which is neither a resource nor a parameter")
        if not self._active(logical_id):
            raise TemplateError(f"reference to {logical_id}, whose condition is false")
        if logical_id in self._creating:
            raise TemplateError(f"circular dependency: {' -> '.join([*self._creating, logical_id])}")
        self._creating.append(logical_id)
        try:
            definition = self.definitions[logical_id]
            for dependency in _as_list(definition.get("DependsOn")):
                if self._active(dependency):
                    self._ensure(dependency)
            resource = self._create(logical_id, definition)
        finally:
            self._creating.pop()
        self.created[logical_id] = resource
        return resource

    # -- creation -----------------------------------------------------------------------

    def build(self) -> LocalStack:
        for logical_id, definition in self.definitions.items():
            if not self._active(logical_id):
                continue
            if definition["Type"] in SKIPPED_TYPES:
                self.skipped[logical_id] = SKIPPED_TYPES[definition["Type"]]
                continue
            self._ensure(logical_id)
        triggers = self._apply_bucket_notifications()
        functions = self._function_specs()
        stream_mappings = self._stream_mappings()
        schedules = self._schedules()
        alarms = {
            lid: r.attributes["_definition"]
            for lid, r in self.created.items()
            if r.type == "AWS::CloudWatch::Alarm"
        }
        outputs = {}
        for name, output in (self.template.get("Outputs") or {}).items():
            if output.get("Condition") and not self.resolver.condition(output["Condition"]):
                continue
            outputs[name] = self.resolver.resolve(output.get("Value"))
        return LocalStack(
            self.stack_name,
            self.stack_id,
            self.region,
            self.account_id,
            self.parameters,
            self.created,
            self.skipped,
            functions,
            triggers,
            alarms,
            outputs,
            stream_mappings,
            schedules,
        )

    def _properties(self, logical_id: str, definition: dict[str, Any], *, leave_out: tuple[str, ...] = ()):
        properties = {k: v for k, v in (definition.get("Properties") or {}).items() if k not in leave_out}
        return self.resolver.resolve(properties)

    def _name(self, logical_id: str, given: Any, *, max_length: int = 64, lowercase: bool = False) -> str:
        return (
            str(given)
            if given
            else generated_name(self.stack_name, logical_id, max_length=max_length, lowercase=lowercase)
        )

    def _create(self, logical_id: str, definition: dict[str, Any]) -> CreatedResource:
        kind = definition["Type"]
        arn_base = f"arn:{PARTITION}"
        region, account = self.region, self.account_id
        if kind == "AWS::S3::Bucket":
            # The notification configuration waits until every function exists (see build).
            properties = self._properties(logical_id, definition, leave_out=("NotificationConfiguration",))
            name = self._name(logical_id, properties.get("BucketName"), max_length=63, lowercase=True)
            self.clients.s3.create_bucket(Bucket=name)
            if (properties.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
                self.clients.s3.put_bucket_versioning(
                    Bucket=name, VersioningConfiguration={"Status": "Enabled"}
                )
            return CreatedResource(
                logical_id,
                kind,
                name,
                {
                    "Arn": f"{arn_base}:s3:::{name}",
                    "DomainName": f"{name}.s3.amazonaws.com",
                    "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
                },
                properties,
            )
        if kind == "AWS::DynamoDB::Table":
            properties = self._properties(logical_id, definition)
            name = self._name(logical_id, properties.get("TableName"), max_length=255)
            request: dict[str, Any] = {
                "TableName": name,
                "KeySchema": properties["KeySchema"],
                "AttributeDefinitions": properties["AttributeDefinitions"],
                "BillingMode": properties.get("BillingMode", "PROVISIONED"),
            }
            for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput"):
                if properties.get(key):
                    request[key] = properties[key]
            # CloudFormation enables the stream by naming its view type; the API wants both.
            view_type = (properties.get("StreamSpecification") or {}).get("StreamViewType")
            if view_type:
                request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view_type}
            table = self.clients.dynamodb.create_table(**request)["TableDescription"]
            ttl = properties.get("TimeToLiveSpecification") or {}
            if str(ttl.get("Enabled")).lower() == "true":
                self.clients.dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
            attributes = {"Arn": f"{arn_base}:dynamodb:{region}:{account}:table/{name}"}
            if table.get("LatestStreamArn"):
                attributes["StreamArn"] = table["LatestStreamArn"]
            return CreatedResource(logical_id, kind, name, attributes, properties)
        if kind == "AWS::SQS::Queue":
            properties = self._properties(logical_id, definition)
            fifo = str(properties.get("FifoQueue")).lower() == "true"
            name = self._name(logical_id, properties.get("QueueName"), max_length=75 if fifo else 80)
            if fifo and not name.endswith(".fifo"):
                name += ".fifo"
            attributes = {
                key: str(properties[key]).lower()
                if isinstance(properties[key], bool)
                else (
                    json.dumps(properties[key]) if isinstance(properties[key], dict) else str(properties[key])
                )
                for key in (
                    "DelaySeconds",
                    "MaximumMessageSize",
                    "MessageRetentionPeriod",
                    "ReceiveMessageWaitTimeSeconds",
                    "VisibilityTimeout",
                    "FifoQueue",
                    "RedrivePolicy",
                    "ContentBasedDeduplication",
                )
                if key in properties
            }
            url = self.clients.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            return CreatedResource(
                logical_id,
                kind,
                url,
                {"Arn": f"{arn_base}:sqs:{region}:{account}:{name}", "QueueName": name, "QueueUrl": url},
                properties,
            )
        if kind == "AWS::KMS::Key":
            properties = self._properties(logical_id, definition)
            key = self.clients.kms.create_key(
                Description=properties.get("Description", ""),
                Policy=json.dumps(properties.get("KeyPolicy") or {}),
            )["KeyMetadata"]
            return CreatedResource(
                logical_id, kind, key["KeyId"], {"Arn": key["Arn"], "KeyId": key["KeyId"]}, properties
            )
        if kind == "AWS::SNS::Topic":
            properties = self._properties(logical_id, definition, leave_out=("Subscription",))
            name = self._name(logical_id, properties.get("TopicName"), max_length=256)
            attributes = {}
            if properties.get("DisplayName"):
                attributes["DisplayName"] = str(properties["DisplayName"])
            if properties.get("KmsMasterKeyId"):
                attributes["KmsMasterKeyId"] = str(properties["KmsMasterKeyId"])
            arn = self.clients.sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
            for inline in self.resolver.resolve(
                (definition.get("Properties") or {}).get("Subscription") or []
            ):
                self.clients.sns.subscribe(
                    TopicArn=arn, Protocol=inline["Protocol"], Endpoint=inline["Endpoint"]
                )
            return CreatedResource(logical_id, kind, arn, {"TopicArn": arn, "TopicName": name}, properties)
        if kind == "AWS::SNS::Subscription":
            properties = self._properties(logical_id, definition)
            attributes = {}
            for key in (
                "FilterPolicy",
                "FilterPolicyScope",
                "RawMessageDelivery",
                "RedrivePolicy",
                "DeliveryPolicy",
            ):
                if key in properties:
                    value = properties[key]
                    attributes[key] = (
                        json.dumps(value)
                        if isinstance(value, dict)
                        else str(value).lower()
                        if isinstance(value, bool)
                        else str(value)
                    )
            arn = self.clients.sns.subscribe(
                TopicArn=properties["TopicArn"],
                Protocol=properties["Protocol"],
                Endpoint=properties["Endpoint"],
                Attributes=attributes,
                ReturnSubscriptionArn=True,
            )["SubscriptionArn"]
            return CreatedResource(logical_id, kind, arn, {"Arn": arn}, properties)
        if kind == "AWS::CloudWatch::Alarm":
            properties = self._properties(logical_id, definition)
            if not properties.get("AlarmName"):
                properties["AlarmName"] = self._name(logical_id, None, max_length=255)
            # The evaluator's own parsing of the template definition (numbers arrive as strings).
            try:
                alarm = AlarmDefinition.from_cloudformation(properties, default_name=logical_id)
            except (NotImplementedError, ValueError) as problem:
                raise TemplateError(f"{logical_id} cannot run in the local cloud: {problem}") from problem
            self.clients.cloudwatch.put_metric_alarm(**alarm.put_request())
            return CreatedResource(
                logical_id,
                kind,
                alarm.name,
                {"Arn": f"{arn_base}:cloudwatch:{region}:{account}:alarm:{alarm.name}", "_definition": alarm},
                properties,
            )
        if kind == "AWS::CloudWatch::Dashboard":
            properties = self._properties(logical_id, definition)
            name = self._name(logical_id, properties.get("DashboardName"), max_length=255)
            body = properties.get("DashboardBody")
            self.clients.cloudwatch.put_dashboard(
                DashboardName=name, DashboardBody=body if isinstance(body, str) else json.dumps(body)
            )
            return CreatedResource(logical_id, kind, name, {}, properties)
        if kind == "AWS::SecretsManager::Secret":
            properties = self._properties(logical_id, definition)
            name = self._name(logical_id, properties.get("Name"), max_length=256)
            request = {"Name": name, "Description": properties.get("Description", "")}
            request["SecretString"] = str(properties.get("SecretString") or "")
            arn = self.clients.secretsmanager.create_secret(**request)["ARN"]
            return CreatedResource(logical_id, kind, arn, {"Id": arn, "Name": name}, properties)
        if kind == "AWS::Logs::LogGroup":
            properties = self._properties(logical_id, definition)
            name = self._name(logical_id, properties.get("LogGroupName"), max_length=512)
            self.clients.logs.create_log_group(logGroupName=name)
            if properties.get("RetentionInDays"):
                self.clients.logs.put_retention_policy(
                    logGroupName=name, retentionInDays=int(properties["RetentionInDays"])
                )
            return CreatedResource(
                logical_id,
                kind,
                name,
                {"Arn": f"{arn_base}:logs:{region}:{account}:log-group:{name}:*"},
                properties,
            )
        if kind == "AWS::Lambda::Function":
            properties = self._properties(logical_id, definition, leave_out=("Code",))
            name = self._name(logical_id, properties.get("FunctionName"), max_length=64)
            return CreatedResource(
                logical_id,
                kind,
                name,
                {"Arn": f"{arn_base}:lambda:{region}:{account}:function:{name}"},
                properties,
            )
        if kind == "AWS::Lambda::LayerVersion":
            properties = self._properties(logical_id, definition, leave_out=("Content",))
            name = self._name(logical_id, properties.get("LayerName"), max_length=140)
            arn = f"{arn_base}:lambda:{region}:{account}:layer:{name}:1"
            return CreatedResource(logical_id, kind, arn, {"LayerVersionArn": arn}, properties)
        if kind == "AWS::Lambda::EventSourceMapping":
            # Delivered by the local cloud's stream poller (modelwatch.local.streams) when the
            # source is a table's stream; see _stream_mappings.
            properties = self._properties(logical_id, definition)
            mapping_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.stack_id}/{logical_id}"))
            return CreatedResource(logical_id, kind, mapping_id, {"Id": mapping_id}, properties)
        if kind == "AWS::Scheduler::Schedule":
            # Created in the embedded AWS as in AWS; the local cloud runs it on its clock
            # (LocalCloud.run_schedules; see _schedules).
            properties = self._properties(logical_id, definition)
            name = self._name(logical_id, properties.get("Name"), max_length=64)
            request = {
                key: properties[key]
                for key in ("ScheduleExpression", "FlexibleTimeWindow", "Target", "State", "Description")
                if key in properties
            }
            arn = self.clients.scheduler.create_schedule(Name=name, **request)["ScheduleArn"]
            return CreatedResource(logical_id, kind, name, {"Arn": arn}, properties)
        if kind == "AWS::Lambda::EventInvokeConfig":
            properties = self._properties(logical_id, definition)
            return CreatedResource(
                logical_id, kind, f"{properties.get('FunctionName')}$LATEST", {}, properties
            )
        if kind in SKIPPED_TYPES:
            # Only reached through a reference; a deterministic ARN keeps the reference valid.
            self.skipped[logical_id] = SKIPPED_TYPES[kind]
            name = generated_name(self.stack_name, logical_id)
            service = kind.split("::")[1].lower()
            return CreatedResource(
                logical_id,
                kind,
                name,
                {
                    "Arn": f"{arn_base}:{service}::{account}:role/{name}"
                    if service == "iam"
                    else f"{arn_base}:{service}:{region}:{account}:{name}"
                },
                {},
            )
        self.skipped[logical_id] = f"{kind} is not emulated by the local cloud"
        return CreatedResource(logical_id, kind, generated_name(self.stack_name, logical_id), {}, {})

    def _apply_bucket_notifications(self) -> list[S3Trigger]:
        triggers: list[S3Trigger] = []
        for logical_id, resource in self.created.items():
            if resource.type != "AWS::S3::Bucket":
                continue
            configuration = self.resolver.resolve(
                (self.definitions[logical_id].get("Properties") or {}).get("NotificationConfiguration") or {}
            )
            lambda_configurations = []
            for index, item in enumerate(configuration.get("LambdaConfigurations") or []):
                function_arn = item["Function"]
                function_id = next(
                    (
                        lid
                        for lid, r in self.created.items()
                        if r.type == "AWS::Lambda::Function" and r.attributes["Arn"] == function_arn
                    ),
                    None,
                )
                if function_id is None:
                    raise TemplateError(f"{logical_id} notifies {function_arn}, which is not in the template")
                rules = {
                    rule["Name"].lower(): rule["Value"]
                    for rule in ((item.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
                }
                configuration_id = f"{function_id}{index}"
                triggers.append(
                    S3Trigger(
                        resource.ref,
                        function_id,
                        configuration_id,
                        (item["Event"],),
                        rules.get("prefix", ""),
                        rules.get("suffix", ""),
                    )
                )
                lambda_configurations.append(
                    {
                        "Id": configuration_id,
                        "LambdaFunctionArn": function_arn,
                        "Events": [item["Event"]],
                        "Filter": {
                            "Key": {
                                "FilterRules": [
                                    {"Name": name, "Value": value} for name, value in rules.items()
                                ]
                            }
                        },
                    }
                )
            if lambda_configurations:
                # Recorded in moto so GetBucketNotificationConfiguration shows it; moto cannot invoke
                # the functions, so the local cloud dispatches uploads by these same rules.
                self.clients.s3.put_bucket_notification_configuration(
                    Bucket=resource.ref,
                    NotificationConfiguration={"LambdaFunctionConfigurations": lambda_configurations},
                )
        return triggers

    def _stream_mappings(self) -> list[StreamMapping]:
        """The event source mappings that read a table's stream; the others are recorded as skipped."""
        tables = {
            r.attributes["StreamArn"]: r.ref
            for r in self.created.values()
            if r.type == "AWS::DynamoDB::Table" and "StreamArn" in r.attributes
        }
        functions = {
            value: lid
            for lid, r in self.created.items()
            if r.type == "AWS::Lambda::Function"
            for value in (r.ref, r.attributes["Arn"])
        }
        mappings = []
        for logical_id, resource in self.created.items():
            if resource.type != "AWS::Lambda::EventSourceMapping":
                continue
            source = resource.properties.get("EventSourceArn")
            if source not in tables:
                self.skipped[logical_id] = f"event source mappings from {source} are not emulated locally"
                continue
            function = str(resource.properties.get("FunctionName"))
            function_id = functions.get(function) or functions.get(":".join(function.split(":")[:7]))
            if function_id is None:
                raise TemplateError(f"{logical_id} invokes {function}, which is not in the template")
            try:
                mappings.append(
                    mapping_from_template(
                        logical_id,
                        resource.properties,
                        function_logical_id=function_id,
                        table_name=tables[source],
                    )
                )
            except StreamMappingError as problem:
                raise TemplateError(f"{problem}") from problem
        return mappings

    def _schedules(self) -> list[Schedule]:
        """The enabled schedules whose target is a function of the template."""
        functions = {
            r.attributes["Arn"]: lid for lid, r in self.created.items() if r.type == "AWS::Lambda::Function"
        }
        schedules = []
        for logical_id, resource in self.created.items():
            if resource.type != "AWS::Scheduler::Schedule" or resource.properties.get("State") == "DISABLED":
                continue
            target = resource.properties.get("Target") or {}
            function_id = functions.get(str(target.get("Arn")))
            if function_id is None:
                self.skipped[logical_id] = f"schedules targeting {target.get('Arn')} are not run locally"
                continue
            every = Schedule.rate_seconds(str(resource.properties.get("ScheduleExpression", "")))
            schedules.append(Schedule(resource.ref, function_id, every, str(target.get("Input") or "{}")))
        return schedules

    def _function_specs(self) -> dict[str, FunctionSpec]:
        invoke_configs = {}
        for resource in self.created.values():
            if resource.type == "AWS::Lambda::EventInvokeConfig":
                invoke_configs[resource.properties.get("FunctionName")] = resource.properties
        specs = {}
        for logical_id, resource in self.created.items():
            if resource.type != "AWS::Lambda::Function":
                continue
            properties = resource.properties
            code_path = self.code_paths.get(logical_id)
            if code_path is None:
                raise TemplateError(f"{logical_id}: only functions with a local CodeUri run locally")
            config = invoke_configs.get(resource.ref) or {}
            on_failure = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            queue_url = next(
                (
                    r.ref
                    for r in self.created.values()
                    if r.type == "AWS::SQS::Queue" and r.attributes["Arn"] == on_failure
                ),
                None,
            )
            logging_config = properties.get("LoggingConfig") or {}
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                name=resource.ref,
                arn=resource.attributes["Arn"],
                handler=str(properties["Handler"]),
                code_dir=(self.project_root / code_path).resolve(),
                environment={
                    k: str(v)
                    for k, v in ((properties.get("Environment") or {}).get("Variables") or {}).items()
                },
                timeout_seconds=int(properties.get("Timeout", 3)),
                memory_mb=int(properties.get("MemorySize", 128)),
                log_group=str(logging_config.get("LogGroup") or f"/aws/lambda/{resource.ref}"),
                max_retry_attempts=int(config.get("MaximumRetryAttempts", 2)),
                on_failure_queue_url=queue_url,
                layers=tuple(str(arn) for arn in properties.get("Layers") or []),
            )
        return specs


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
