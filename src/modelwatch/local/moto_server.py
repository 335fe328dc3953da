"""A moto server in a child process on loopback: the local cloud's AWS.

moto runs in its own process, not in a thread of ours: its request handling is pure
Python, and sharing one GIL with the functions that call it made the same DynamoDB work
about a third slower on two cores. The child also installs ``moto_tuning``'s shortcuts.

The child is ``python -m modelwatch.local.moto_server``. It prints its port once it
listens, and exits when its stdin closes - which also happens when the parent dies
without a chance to stop it (SIGKILL), so no orphaned server keeps the port. It runs in
its own session so that Ctrl-C in the terminal reaches only the parent, which then
stops it in order.

moto cannot deliver SNS messages to email, and fails a publish to a topic with a Lambda
subscriber (the function is not a moto function). The child therefore hands those
deliveries - after the subscription's filter policy, so as SNS would - to the parent
with a POST to ``--deliver-to``; the parent writes the email or invokes the function.
Every publish goes through this path, from the alarm evaluator or from the AWS CLI alike.

The stack's functions are registered in moto's Lambda for their configuration only
(modelwatch.local.layers); the parent runs them. moto would otherwise run a registered
function itself, in Docker, for each S3 notification: that is switched off here.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelwatch.errors import UserError

DELIVERED_PROTOCOLS = ("email", "email-json", "lambda")
# The child's second line: moto is loaded and serving. Loading takes ~0.7 s.
READY = "ready"
READY_TIMEOUT_SECONDS = 60.0


@dataclass
class EmbeddedAws:
    process: subprocess.Popen[bytes]
    endpoint_url: str
    log_path: Path | None = None
    ready: bool = False

    def wait_ready(self, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
        """Block until moto is loaded in the child; a child that died or hangs on the way is a UserError."""
        if self.ready:
            return
        assert self.process.stdout is not None
        answered, _, _ = select.select([self.process.stdout], [], [], timeout_seconds)
        line = self.process.stdout.readline().strip().decode() if answered else ""
        if line != READY:
            if self.process.poll() is None:
                self.process.kill()  # hung while loading: it would not notice stdin closing
            self.stop()
            what = (
                f"stopped while starting (exit code {self.process.returncode})"
                if answered
                else f"did not start within {timeout_seconds:.0f} s"
            )
            where = f"; its errors are in {self.log_path}" if self.log_path is not None else ""
            raise UserError(f"the local AWS (moto) {what}{where}")
        self.ready = True

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # the child's signal to shut down
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_moto_server(
    port: int = 0, deliver_to: str | None = None, log_path: Path | None = None, *, wait: bool = True
) -> EmbeddedAws:
    """Start moto on 127.0.0.1 in a child process (port 0 picks a free one).

    Returns once moto serves, or with ``wait=False`` as soon as the port listens (moto takes
    ~0.7 s to load): do other work, then call ``wait_ready()`` before the first request. The
    child's own errors (not its request log) go to ``log_path`` when given.
    """
    command = [sys.executable, "-m", "modelwatch.local.moto_server", "--port", str(port)]
    if deliver_to:
        command += ["--deliver-to", deliver_to]
    # The child must import this very package (a worktree or checkout may not be the installed one).
    package_root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path or os.devnull, "ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
            # Unbuffered: reading the port line must not pull the ready line into a Python
            # buffer, where wait_ready's select on the pipe would not see it (today the
            # child closes the pipe after "ready", and that EOF would wake the select).
            bufsize=0,
        )
    aws = EmbeddedAws(process, "", log_path)
    atexit.register(aws.stop)
    assert process.stdout is not None
    # The child's first line is its port, written once the socket listens. (readline has no
    # timeout; the child writes it at once or exits, which ends the read with b"".)
    line = process.stdout.readline().strip()
    if not line.isdigit():
        aws.stop()
        where = f"; see {log_path}" if log_path is not None else ""
        raise UserError(
            f"the local AWS (moto) could not listen on 127.0.0.1:{port} (exit code "
            f"{process.returncode}){where}; is the port in use? Pick another with --port."
        )
    aws.endpoint_url = f"http://127.0.0.1:{int(line)}"
    if wait:
        aws.wait_ready()
    return aws


# --------------------------------------------------------------------------- the child process


def _forward_sns_deliveries(deliver_to: str) -> None:
    from moto.sns import models as sns_models

    original = sns_models.Subscription.publish

    def publish(
        self: Any,
        message: str,
        message_id: str,
        subject: str | None = None,
        message_attributes: dict[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        if self.protocol not in DELIVERED_PROTOCOLS:
            return original(self, message, message_id, subject, message_attributes, *args, **kwargs)
        matcher = getattr(self, "_filter_policy_matcher", None)
        if matcher is not None and not matcher.matches(message_attributes, message):
            return None  # the subscription's filter policy drops it, as in SNS
        body = {
            "protocol": self.protocol,
            "endpoint": self.endpoint,
            "subscription_arn": self.arn,
            "topic_arn": self.topic.arn,
            "message_id": message_id,
            "subject": subject,
            "message": message,
        }
        request = urllib.request.Request(
            deliver_to, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=30).close()
        return None

    sns_models.Subscription.publish = publish  # type: ignore[method-assign]


def _no_function_runs_in_moto() -> None:
    """moto's Lambda keeps the functions' configuration; running one is the parent's job (it
    delivers S3 events itself). Without this, each upload would make moto try Docker."""
    from moto.awslambda import models as lambda_models

    def invoke(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the local cloud runs its functions in its own process, not in moto")

    lambda_models.LambdaFunction.invoke = invoke  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--deliver-to")
    arguments = parser.parse_args()

    # Listen and tell the parent the port before importing moto (~0.7 s): the parent can set
    # up meanwhile, then waits for the ready line. A port in use ends this process here,
    # before the port line, which the parent reports.
    listener = socket.create_server(("127.0.0.1", arguments.port))
    print(listener.getsockname()[1], flush=True)

    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    from modelwatch.local.moto_tuning import (
        CachingDispatcher,
        use_dynamodb_serializer,
        use_exact_metric_matching,
        use_serial_stream_records,
    )

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    use_dynamodb_serializer()
    use_exact_metric_matching()
    use_serial_stream_records()
    _no_function_runs_in_moto()
    if arguments.deliver_to:
        _forward_sns_deliveries(arguments.deliver_to)
    server = make_server(
        "127.0.0.1",
        arguments.port,
        CachingDispatcher(create_backend_app),
        threaded=True,
        request_handler=MotoRequestHandler,
        fd=listener.fileno(),
    )
    # Nobody reads stdout after the ready line: what moto prints while serving goes to the
    # log (stderr) instead, so it can neither fill the pipe nor arrive before "ready".
    to_parent = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    threading.Thread(target=server.serve_forever, name="moto-server", daemon=True).start()
    to_parent.write(READY + "\n")
    to_parent.close()
    sys.stdin.buffer.read()  # until the parent closes stdin or dies
    os._exit(0)  # nothing to save; don't wait for in-flight request threads


if __name__ == "__main__":
    main()
