"""The embedded default's broker: kombu's filesystem transport, made to notice a stop request.

Celery runs pools without an event loop of their own (``threads``, which ``make run`` uses,
and ``solo``) in its ``synloop``: it looks at the stop flag only between calls of
``drain_events(timeout=2.0)``, and runs one more such call after it has seen the flag
(``celery/worker/loops.py``, a ``try``/``finally``). With the filesystem transport each call
polls and sleeps for its whole two seconds when no message comes, so a worker asked to stop
(Ctrl-C on ``make run``) went on for 2 to 4 s before it began to shut down, and ``make run``
killed it (measured: 4.4 s from SIGTERM to exit). Redis, the production broker, is not
affected: its worker sleeps in a socket that the stop interrupts."""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from celery.worker import state
from kombu.transport import filesystem


def _stop_requested() -> bool:
    """True once this process's Celery worker was asked to stop, warm or cold (the flags
    Celery's own signal handlers set; ``None`` or ``False`` until then, and always in a
    process that is not a worker, such as the web server sending tasks)."""
    # by identity, as Celery's own state.maybe_shutdown does: a warm stop sets exit code 0,
    # which equals False
    return any(
        flag is not None and flag is not False
        for flag in (state.should_stop, state.should_terminate)
    )


class FilesystemTransport(filesystem.Transport):
    """kombu's filesystem transport whose :meth:`drain_events` gives up early, with the
    ``TimeoutError`` (``socket.timeout``) its caller expects of a wait that saw no message,
    once the worker has been asked to stop. Between the worker's polls (``polling_interval``
    seconds, 0.2 in the embedded default's settings) it is the same transport: same folders,
    same messages."""

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        """Deliver the next message to its consumer, waiting at most ``timeout`` seconds
        (forever when ``None``; one poll when 0), polling every ``polling_interval`` seconds:
        kombu's own loop (``kombu/transport/virtual/base.py``, ``Transport.drain_events``)
        with the stop request looked at before each poll.

        Raises:
            TimeoutError: no message within ``timeout``, or a stop was requested (before the
                next poll: within one ``polling_interval`` of the request).
        """
        cycle = self.cycle
        assert cycle is not None, "a consumer's connection has its cycle"
        started = time.monotonic()
        polling_interval = self.polling_interval
        if timeout and polling_interval and polling_interval > timeout:
            polling_interval = timeout
        while True:
            if _stop_requested():
                raise TimeoutError()
            try:
                cycle.get(self._deliver, timeout=timeout)
            except Empty:
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise TimeoutError() from None
                if polling_interval is not None:
                    time.sleep(polling_interval)
            else:
                return
