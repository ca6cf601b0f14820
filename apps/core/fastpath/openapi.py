"""The fast-path routes in the OpenAPI document: a drf-spectacular postprocessing hook
(``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``) that describes every route registered with
the fast path, which Django never sees and so drf-spectacular cannot find.

Each route brings its own part (``OperationDoc``: path, summary, 200 body schema, its own
parameters); this adds what the fast path does the same way for all of them (see
``app.FastPath._serve`` and ``_stream``):

* the runtime token (security scheme ``runtimeToken``, bare or ``Bearer``);
* ``If-None-Match`` (RFC 9110 weak comparison, lists, ``*``), ``Accept-Encoding`` (gzip,
  docs/decisions/0027: a document, or a stream as one gzip member per event) and, for polled
  routes, ``?wait=<seconds>`` (0 to the route's ``max_wait_s``: a long-poll while the client
  holds the current tag);
* 200 with ``ETag``, ``Content-Encoding`` (when gzip), ``Cache-Control``, ``Vary`` and
  ``X-Revision``; 304 (no body) when the tag still matches; 400 for a ``wait`` out of range;
  401 for a missing, unknown or revoked token; 404 where a path parameter names something
  the token's environment does not hold.

Action routes (``ActionRoute``, POST) get their request body's schema, 200, 400, 401, 404 and
413 instead. Not documented because the fast path never answers them to a valid request of a
described operation: 413 for GET operations (no body is read), 403 (a token's scope selects what
it reads, nothing is refused by role), 301 (only with ``SECURE_SSL_REDIRECT`` on plain HTTP).
HEAD is answered like GET without the body and is left out, as drf-spectacular leaves it out
for Django's views."""

from __future__ import annotations

import copy
import re
from typing import Any

from .registry import ActionRoute, AnyRoute, OperationDoc, Route, StreamRoute, WaitRoute, registry

ERROR = {"$ref": "#/components/schemas/Error"}
# Same definition as apps.accounts.api.authentication.RuntimeTokenScheme (used by the Django
# runtime views); set here too so the fast-path operations never name a missing scheme.
RUNTIME_TOKEN_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "A runtime token, bare (as Unleash SDKs send it) or `Bearer <token>`.",
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": (
        "Entity tags the client holds (RFC 9110: weak `W/` tags compare equal to strong ones, a "
        "comma-separated list, or `*`). A match answers 304 without a body, or with `wait`, "
        "waits for the next change first."
    ),
    "schema": {"type": "string"},
}
ACCEPT_ENCODING = {
    "name": "Accept-Encoding",
    "in": "header",
    "required": False,
    "description": (
        "Content codings the client accepts (RFC 9110 12.5.3, q-values, `*`, `identity`). "
        "When it accepts `gzip`, the body is sent gzip-coded (pre-compressed once per "
        "revision) with `Content-Encoding: gzip`; without the header, plain bytes."
    ),
    "schema": {"type": "string"},
}
STREAM_ACCEPT_ENCODING = {
    **ACCEPT_ENCODING,
    "description": (
        "Content codings the client accepts (RFC 9110 12.5.3, q-values, `*`, `identity`). "
        "When it accepts `gzip`, the stream is sent with `Content-Encoding: gzip` as a "
        "sequence of complete gzip members, one per event or comment (RFC 1952 2.2), each "
        "decodable as it arrives; without the header, plain text."
    ),
}
_HEADERS = {
    "ETag": {
        "description": (
            "The entity tag of this representation, for `If-None-Match`; the gzip-coded form "
            'has its own (`"<tag>-gzip"`), and either answers 304.'
        ),
        "schema": {"type": "string"},
    },
    "Content-Encoding": {
        "description": "`gzip` when the body is sent gzip-coded; absent for plain bytes.",
        "schema": {"type": "string", "enum": ["gzip"]},
    },
    "X-Revision": {
        "description": "The environment revision the body was built at.",
        "schema": {"type": "integer"},
    },
    "Cache-Control": {"schema": {"type": "string", "enum": ["no-cache"]}},
    "Vary": {"schema": {"type": "string"}},
}
_PATH_PARAMETER = re.compile(r"{[^}]+}")


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


_RETRY_AFTER = {
    "description": "Seconds to wait before sending the request again.",
    "schema": {"type": "integer", "minimum": 1},
}


def _retry_later(description: str) -> dict[str, Any]:
    return {**_error(description), "headers": {"Retry-After": copy.deepcopy(_RETRY_AFTER)}}


# What every fast-path route may answer besides its own statuses: too many held requests for
# one token (streams and waiting long-polls, FASTPATH_MAX_OPEN_PER_TOKEN), and the database
# lost for a moment while a representation had to be rebuilt (decision 0015).
_SHARED_ERRORS = {
    "429": "Too many streams or waiting long-polls open for this token in this process.",
    "503": "The database is unavailable for a moment (a restart or failover).",
}


def _wait(route: Route) -> dict[str, Any]:
    return {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": (
            "Long-poll: seconds to hold the request while the client's `If-None-Match` still "
            "matches; answered (200) as soon as the content changes, 304 at the end. "
            f"Between 0 and {route.max_wait_s:g}."
        ),
        "schema": {"type": "number", "minimum": 0, "maximum": route.max_wait_s, "default": 0},
    }


def _polled_operation(route: Route, doc: OperationDoc) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "The current representation.",
            "headers": copy.deepcopy(_HEADERS),
            "content": {"application/json": {"schema": dict(doc.response)}},
        },
        "304": {
            "description": "The client's `If-None-Match` matches the current representation.",
            "headers": {key: copy.deepcopy(_HEADERS[key]) for key in ("ETag", "X-Revision")},
        },
        "400": _error("`wait` is not a number between 0 and the route's maximum."),
        "401": _error("No runtime token, or one that is unknown, revoked or archived."),
    }
    if _PATH_PARAMETER.search(doc.path):
        responses["404"] = _error("The token's environment holds nothing of that name.")
    return {
        "parameters": [copy.deepcopy(IF_NONE_MATCH), copy.deepcopy(ACCEPT_ENCODING), _wait(route)],
        "responses": responses,
    }


def _stream_operation(route: StreamRoute, doc: OperationDoc) -> dict[str, Any]:
    return {
        "parameters": [copy.deepcopy(IF_NONE_MATCH), copy.deepcopy(STREAM_ACCEPT_ENCODING)],
        "responses": {
            "200": {
                "description": (
                    f"Server-sent events: `{route.connected_event}` with the whole state (left "
                    "out when `If-None-Match` matches it), then "
                    f"`{route.updated_event}` after each change, comments as keep-alive. Each "
                    "event's `data` is the JSON given as `x-event-data`."
                ),
                "headers": {
                    key: copy.deepcopy(_HEADERS[key])
                    for key in ("ETag", "Content-Encoding", "Vary")
                },
                "content": {
                    "text/event-stream": {
                        "schema": {"type": "string", "x-event-data": dict(doc.response)}
                    }
                },
            },
            "401": _error("No runtime token, or one that is unknown, revoked or archived."),
        },
    }


def _action_operation(route: ActionRoute, doc: OperationDoc) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "parameters": [],
        "responses": {
            "200": {
                "description": "The answer.",
                "content": {"application/json": {"schema": dict(doc.response)}},
            },
            "400": _error("The body is not JSON of the documented shape: field errors."),
            "401": _error("No runtime token, or one that is unknown, revoked or archived."),
            "404": _error("The body names something the token's scope does not hold."),
            "413": _error(f"The body is over {route.max_body_bytes:,} bytes."),
        },
    }
    if doc.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": dict(doc.request)}},
        }
    return operation


def _wait_operation(route: WaitRoute, doc: OperationDoc) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": (
                    "Long-poll: seconds to hold the request while the answer is not settled "
                    "(e.g. an approval still waiting); answered as soon as it settles, or with "
                    f"the unsettled state at the end. Between 0 and {route.max_wait_s:g}."
                ),
                "schema": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": route.max_wait_s,
                    "default": 0,
                },
            }
        ],
        "responses": {
            "200": {
                "description": "The current state.",
                "content": {"application/json": {"schema": dict(doc.response)}},
            },
            "400": _error("`wait` is not a number between 0 and the route's maximum."),
            "401": _error("No runtime token, or one that is unknown, revoked or archived."),
            "404": _error("The token's scope holds nothing of that id."),
        },
    }


def _operation(route: AnyRoute, doc: OperationDoc) -> dict[str, Any]:
    if isinstance(route, ActionRoute):
        shared = _action_operation(route, doc)
    elif isinstance(route, WaitRoute):
        shared = _wait_operation(route, doc)
    elif isinstance(route, StreamRoute):
        shared = _stream_operation(route, doc)
    else:
        shared = _polled_operation(route, doc)
    operation = {
        "operationId": doc.operation_id,
        "summary": doc.summary,
        "description": doc.description,
        "tags": [doc.tag],
        "security": [{"runtimeToken": []}],
        "parameters": [*(copy.deepcopy(dict(p)) for p in doc.parameters), *shared["parameters"]],
        "responses": {
            **shared["responses"],
            **{code: _retry_later(text) for code, text in _SHARED_ERRORS.items()},
        },
    }
    if "requestBody" in shared:
        operation["requestBody"] = shared["requestBody"]
    return operation


def document_fastpath_routes(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add a GET operation (POST for an action route) for
    each ``OperationDoc`` of every registered fast-path route, with the components the docs
    bring. Runs after ``apps.core.api.document_error_responses`` (which defines the ``Error``
    schema and must not add statuses the fast path never answers). Raises ``ValueError``
    when two routes describe the same path or component differently."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {}).setdefault("runtimeToken", RUNTIME_TOKEN_SCHEME)
    paths = result.setdefault("paths", {})
    routes: list[AnyRoute] = registry.all()
    for route in sorted(routes, key=lambda r: r.path):
        method = "post" if isinstance(route, ActionRoute) else "get"
        for doc in route.docs:
            for name, schema in doc.components.items():
                if schemas.setdefault(name, dict(schema)) != dict(schema):
                    raise ValueError(f"Two fast-path routes define the schema {name!r}.")
            if method in paths.get(doc.path, {}):
                raise ValueError(f"{doc.path} is described twice.")
            paths.setdefault(doc.path, {})[method] = _operation(route, doc)
    return result
