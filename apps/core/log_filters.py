"""Logging filters the settings' ``LOGGING`` installs on the console handler."""

from __future__ import annotations

import logging


class ClientErrorsOneLine(logging.Filter):
    """A client's mistake (a 4xx: 403 refused, 400 bad request, a disallowed host) is one log
    line, its traceback dropped: Django logs those with the exception that made them
    (``django.request`` "Forbidden (Permission denied)", ``django.security.*``), which says
    nothing about a fault of ours and floods the log. A 5xx keeps its traceback. Never drops
    the record itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
