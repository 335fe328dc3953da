"""The one stand-in for Lambda's context object in tests, sized by template.yaml."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from tests.template_resources import function_properties, load_template, resolve

ACCOUNT_ID = "123456789012"


def function_global(name: str) -> str:
    """A Globals.Function setting (Timeout, MemorySize) with parameters at their defaults."""
    return resolve(load_template()["Globals"]["Function"][name], {}, f"Globals.Function.{name}")


@dataclass
class LambdaContext:
    """The attributes Powertools and the handlers read from Lambda's context object.

    By default a function on the template's Globals (Timeout, MemorySize); LambdaContext.of
    gives a named function's own. get_remaining_time_in_millis counts down from seconds_left
    in real time, as Lambda's does from the Timeout; each invocation has its own request id.
    """

    seconds_left: float = field(default_factory=lambda: float(function_global("Timeout")))
    function_name: str = "modelwatch-test"
    memory_limit_in_mb: int = field(default_factory=lambda: int(function_global("MemorySize")))
    region: str = "us-east-1"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            self.invoked_function_arn = (
                f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"
            )
        self._deadline = time.monotonic() + self.seconds_left

    @classmethod
    def of(cls, logical_id: str, **overrides: object) -> LambdaContext:
        """The context Lambda gives the template's function: its Timeout and MemorySize
        (Globals merged, parameters at their defaults) unless overridden."""
        properties = function_properties(logical_id)
        settings: dict[str, object] = {
            "function_name": f"modelwatch-test-{logical_id}",
            "seconds_left": float(resolve(properties["Timeout"], {}, f"{logical_id}.Timeout")),
            "memory_limit_in_mb": int(resolve(properties["MemorySize"], {}, f"{logical_id}.MemorySize")),
        }
        settings.update(overrides)
        return cls(**settings)  # type: ignore[arg-type]

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)
