"""Reserved for the telemetry app of DESIGN.md, not built yet.

The package exists so the import-linter contracts in pyproject.toml can already name it
(import-linter refuses a contract that names a missing module). It is not installed in
INSTALLED_APPS and holds no code."""
