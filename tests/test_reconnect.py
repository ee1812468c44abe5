"""The reconnecting client recipe (examples/reconnecting_client.py): its server is killed and
started again on the same port, and the client carries on by itself."""

from __future__ import annotations

from support import TIMEOUT, Program


def test_client_carries_on_after_its_server_restarts(programs: list[Program]) -> None:
    server = Program("echo_server.py", "tcp:0:interface=127.0.0.1")
    programs.append(server)
    port = server.port()
    client = Program("reconnecting_client.py", f"tcp:host=127.0.0.1:port={port}", "6")
    programs.append(client)
    client.expect("^answer 2$")
    server.process.kill()
    server.stop()
    assert client.process.poll() is None  # waiting for its server, not crashed
    # The restarted server must have the port the client knows, so here alone a port is chosen
    # before it is bound: between the first server's death and the second one's bind, another
    # program could take it, and the second server would then fail to start.
    server = Program("echo_server.py", f"tcp:{port}:interface=127.0.0.1")
    programs.append(server)
    assert server.port() == port
    client.expect("^answer 6$")
    assert client.process.wait(TIMEOUT) == 0
    assert [line for line in client.lines if line.startswith("answer")] == [
        f"answer {n}" for n in range(1, 7)
    ]
