"""The browser UI: flags (list, editor, detail with usage) and the Kill switches page."""
