"""call()'s waiter (drivers.host._Answer): a timeout, a close while waiting, a closed link."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import pytest

from drivers.host import CommandTimeout, HandpieceConnection, LinkDown
from drivers.protocol import Ack, GetStatus, SimControl, Status
from drivers.sim.firmware import SimulatedHandpiece
from drivers.sim.server import TcpServer


@pytest.fixture
def tcp_sim() -> Iterator[TcpServer]:
    server = TcpServer(SimulatedHandpiece("ndyag-1064", seed=3, now=time.monotonic()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.close()
    thread.join(timeout=2)


def test_call_that_times_out_leaves_the_connection_usable(tcp_sim: TcpServer) -> None:
    with HandpieceConnection(tcp_sim.url, reconnect=False) as conn:
        conn.send(SimControl("delay 150"))  # answers held 150 ms: within the retry budget
        with pytest.raises(CommandTimeout, match=r"GetStatus: no answer in 0\.01 s"):
            conn.call(GetStatus(), timeout=0.01)
        # The late answer finds no one waiting; the next commands are answered as usual.
        assert isinstance(conn.call(SimControl("delay 0")), Ack)
        assert isinstance(conn.call(GetStatus()), Status)


def test_close_fails_a_call_still_waiting(tcp_sim: TcpServer) -> None:
    conn = HandpieceConnection(tcp_sim.url, reconnect=False)
    conn.open()
    conn.send(SimControl("delay 1000"))  # its own answer is held too
    outcome: queue.Queue[object] = queue.Queue()

    def waiting_call() -> None:
        try:
            outcome.put(conn.call(GetStatus(), timeout=5.0))
        except BaseException as exc:  # handed to the test thread
            outcome.put(exc)

    caller = threading.Thread(target=waiting_call)
    caller.start()
    while len(conn._futures) < 2:  # the call is queued behind SIM_CONTROL and waiting
        time.sleep(0.001)
    conn.close()
    caller.join(timeout=5.0)
    result = outcome.get(timeout=1.0)
    assert isinstance(result, LinkDown), result
    with pytest.raises(LinkDown, match="link is down"):
        conn.call(GetStatus(), timeout=0.1)


def test_call_on_a_connection_never_opened_is_link_down() -> None:
    conn = HandpieceConnection("sim:ndyag-1064", reconnect=False)
    with pytest.raises(LinkDown, match="link is down"):
        conn.call(GetStatus())
