"""The runtime fast path: a thin asyncio layer in front of Django for what runtimes poll.

It holds no business logic, only lookups: the runtime token (by hash, cached), the current
revision of the token's environment (kept fresh by pub/sub), and the serialised bytes for that
revision (built once per revision and scope by a builder the owning app registers). ETag and
``If-None-Match`` give 304s; ``?wait=N`` long-polls; stream routes send server-sent events.
Everything else goes to Django."""

from .registry import OperationDoc, Route, StreamRoute, TokenScope, register, register_stream

__all__ = ["OperationDoc", "Route", "StreamRoute", "TokenScope", "register", "register_stream"]
