"""Alert notifier: posts each CloudWatch alarm notification from the alert topic to Slack.

The work is in modelwatch.alerts; this handler only unwraps the SNS event. An exception
propagates on purpose: SNS invokes asynchronously, so Lambda retries the event and then
hands it to the on-failure destination, where the alert is kept for a person.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.data_classes import SNSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwatch.alerts import AlertNotifier

logger = Logger()
# Only the AWS SDK is traced: patching urllib/http.client would record the webhook URL,
# a credential, in every trace.
tracer = Tracer(patch_modules=["boto3", "botocore"])
# modelwatch.alerts logs through the standard library. Under the template's service name
# ("modelwatch") it is already a child of this logger; this keeps its lines in the same
# JSON format when a deployment names the service differently.
copy_config_to_registered_loggers(source_logger=logger, include={"modelwatch"})


@cache
def notifier() -> AlertNotifier:
    """Built on the first event, not at import, so tests can set up moto and the
    environment first; kept while the instance is warm."""
    return AlertNotifier.from_environment()


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=SNSEvent)
def lambda_handler(event: SNSEvent, context: LambdaContext) -> dict[str, Any]:
    posted = skipped = 0
    for record in event.records:
        delivered = notifier().notify(
            record.sns.message,
            time_left_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
        )
        if delivered:
            posted += 1
        else:
            skipped += 1
    return {"posted": posted, "skipped": skipped}
