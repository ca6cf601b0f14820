"""The kernel: what every app builds on, importing no app (DESIGN.md, "Layout").

API and UI base classes and the error shape, input guards, canonical JSON (RFC 8785), the
conditional-request parser, optimistic-concurrency errors, roles and authorisation, lock
functions, the after-commit event seam and the runtime fast path with its route registry.
See docs/decisions/0017-kernel-and-event-seam.md."""
