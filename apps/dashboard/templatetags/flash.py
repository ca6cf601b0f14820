"""Template filters for flash messages (templates/partials/messages.html)."""

from __future__ import annotations

from collections.abc import Iterable

from django import template
from django.contrib.messages import constants
from django.contrib.messages.storage.base import Message

register = template.Library()


@register.filter
def failures(messages: Iterable[Message]) -> list[Message]:
    """The messages at ERROR level or above: they go in an alert (read out at once)."""
    return [m for m in messages if m.level >= constants.ERROR]


@register.filter
def news(messages: Iterable[Message]) -> list[Message]:
    """The messages below ERROR level: they go in a status region (read out when convenient)."""
    return [m for m in messages if m.level < constants.ERROR]
