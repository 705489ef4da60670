"""Configuration: the scenario schema (pydantic, built from the registry's plugins), `--set`
overrides, and the one-line formatting of validation errors."""
