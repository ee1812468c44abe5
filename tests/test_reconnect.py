"""The reconnecting client recipe (examples/reconnecting_client.py): its server is killed and
started again on the same port, and the client carries on by itself."""

from __future__ import annotations

import socket

from support import TIMEOUT, Program


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_client_carries_on_after_its_server_restarts() -> None:
    port = free_port()
    listen = f"tcp:{port}:interface=127.0.0.1"
    server = Program("echo_server.py", listen)
    client = Program("reconnecting_client.py", f"tcp:host=127.0.0.1:port={port}", "6")
    try:
        server.port()
        client.expect("^answer 2$")
        server.process.kill()
        server.stop()
        assert client.process.poll() is None  # waiting for its server, not crashed
        server = Program("echo_server.py", listen)
        server.port()
        client.expect("^answer 6$")
        assert client.process.wait(TIMEOUT) == 0
        assert [line for line in client.lines if line.startswith("answer")] == [
            f"answer {n}" for n in range(1, 7)
        ]
    finally:
        client.stop()
        server.stop()
