"""Static files that come from installed Python packages rather than from ``static/``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage


class PlotlyFinder(BaseFinder):
    """Serves the ``plotly.min.js`` bundled with the plotly Python package as
    ``vendor/plotly/plotly.min.js``: the browser runs exactly the plotly.js the figures were
    built for, from this server (no CDN), and the repository keeps no 4 MB copy of it."""

    prefix = "vendor/plotly"
    filename = "plotly.min.js"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(
            location=str(Path(plotly.__file__).parent / "package_data")
        )
        self.storage.prefix = self.prefix  # type: ignore[attr-defined]  # collectstatic and whitenoise read it

    def check(self, **kwargs: Any) -> list[Any]:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        if kwargs:  # the deprecated ``all`` keyword of Django < 6.1
            find_all = self._check_deprecated_find_param(find_all=find_all, **kwargs)  # type: ignore[attr-defined]
        if path != f"{self.prefix}/{self.filename}":
            return []
        match = self.storage.path(self.filename)
        return [match] if find_all else match

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, FileSystemStorage]]:
        yield self.filename, self.storage
