"""How the API reads JSON numbers (``ExactNumberJSONParser``) and answers whatever a client
asks for: JSON (DRF's content negotiation) and ``OPTIONS`` (DRF's metadata).

Its own module: DRF imports these classes while ``rest_framework.views`` is being imported,
so they cannot live beside the viewsets in ``apps.core.api``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework import exceptions
from rest_framework.metadata import SimpleMetadata
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

from .input_guards import GuardedJSONParser


class JsonNumber(float):
    """A JSON number with a fraction or exponent, as a float that remembers the literal it
    was written as (``json_text``). Everything that takes a float takes it; what turns a
    number into text can use every digit (``apps.flags.validation.number_text``)."""

    json_text: str

    def __new__(cls, text: str) -> JsonNumber:
        number = super().__new__(cls, text)
        number.json_text = text
        return number


class ExactNumberJSONParser(GuardedJSONParser):
    """The guarded JSON parser (size, depth, NUL: ``apps.core.input_guards``), except that
    numbers with a fraction or exponent are :class:`JsonNumber`: a float holds 17
    significant digits, so ``0.12345678901234567891`` or ``1.0000000000000000001`` (which a
    float reads as ``1``) would otherwise reach a flag's constraint as another number
    (issue 8, kind 5)."""

    parse_float = JsonNumber


class JsonFallbackNegotiation(DefaultContentNegotiation):
    """A client whose ``Accept`` header names nothing the view writes (a browser's
    ``text/html,...``, ``application/xml``) gets the view's first representation (JSON for
    every API view) rather than a 406: there is no other to offer, and an error must stay
    readable (issue 8, kind 10).
    An explicit ``?format=`` the API cannot write is still a 404, as DRF answers it."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except exceptions.NotAcceptable:
            return renderers[0], renderers[0].media_type


class ApiMetadata(SimpleMetadata):
    """``OPTIONS`` answers the view's name, description, renderers and parsers (and the
    ``Allow`` header); the fields each action takes are described by the OpenAPI schema at
    ``/api/schema/``. DRF's default introspects one ``serializer_class`` per view, which
    these views do not have (one serializer per action), and answered 500."""

    def determine_actions(self, request: Request, view: Any) -> dict[str, Any]:
        return {}
