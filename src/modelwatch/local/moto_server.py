"""An embedded moto server on loopback: the local cloud's AWS."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from moto.server import ThreadedMotoServer


@dataclass
class EmbeddedAws:
    server: ThreadedMotoServer
    endpoint_url: str

    def stop(self) -> None:
        self.server.stop()


def start_moto_server(port: int = 0) -> EmbeddedAws:
    """Start moto on 127.0.0.1 (port 0 picks a free one); its request log is silenced."""
    # werkzeug logs every request at INFO; a batch makes hundreds of them.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    return EmbeddedAws(server=server, endpoint_url=f"http://{host}:{bound_port}")
