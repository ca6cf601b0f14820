"""The embedded default's broker transport (controlplane/broker.py): kombu's filesystem
transport that stops handing out messages once the worker was asked to stop, so `make run`'s
Ctrl-C finds the worker stopping at once instead of 2-4 s later."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.worker import state
from kombu import Connection, Queue

from controlplane.broker import FilesystemTransport


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[Connection]:
    folder = tmp_path / "broker"
    (folder / "processed").mkdir(parents=True)
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
    with Connection("filesystem://", transport=FilesystemTransport, transport_options=options) as c:
        yield c


@pytest.fixture
def stop_flags() -> Iterator[None]:
    saved = state.should_stop, state.should_terminate
    yield
    state.should_stop, state.should_terminate = saved


def _one_waiting_message(connection: Connection, received: list[object]) -> None:
    queue = Queue("jobs", routing_key="jobs")
    connection.default_channel.queue_declare(queue="jobs")
    with connection.Producer() as producer:
        producer.publish({"n": 1}, routing_key="jobs", declare=[queue])
    connection.Consumer(
        [queue], callbacks=[lambda body, message: (received.append(body), message.ack())]
    ).consume()


def test_no_stop_requested__a_waiting_message_is_delivered(
    connection: Connection, stop_flags: None
) -> None:
    state.should_stop = state.should_terminate = None
    received: list[object] = []
    _one_waiting_message(connection, received)
    connection.drain_events(timeout=5)
    assert received == [{"n": 1}]


def test_no_stop_requested__timeout_zero__one_poll_delivers_a_waiting_message(
    connection: Connection, stop_flags: None
) -> None:
    state.should_stop = state.should_terminate = None
    received: list[object] = []
    _one_waiting_message(connection, received)
    connection.drain_events(timeout=0)
    assert received == [{"n": 1}]
    with pytest.raises(TimeoutError):
        connection.drain_events(timeout=0)  # nothing left: no wait either


@pytest.mark.parametrize(
    ("should_stop", "should_terminate"),
    [
        (0, None),  # Ctrl-C / SIGTERM: a warm stop with exit code 0, which equals False
        (1, None),  # a warm stop with another exit code
        (None, 0),  # a cold stop
        (False, 1),
    ],
)
def test_stop_requested__drain_gives_up_at_once_and_the_message_stays_queued(
    connection: Connection, stop_flags: None, should_stop: object, should_terminate: object
) -> None:
    received: list[object] = []
    _one_waiting_message(connection, received)
    state.should_stop, state.should_terminate = should_stop, should_terminate
    # no timeout: kombu's own transport would deliver the message; ours must not wait at all
    with pytest.raises(TimeoutError):
        connection.drain_events(timeout=None)
    assert received == []
    # the message is still there for the next start
    state.should_stop = state.should_terminate = None
    connection.drain_events(timeout=5)
    assert received == [{"n": 1}]
