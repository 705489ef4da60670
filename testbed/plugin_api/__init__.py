"""The plugin machinery: hook specifications (the manual of each kind), the registry that
resolves plugins through pluggy entry points, and the base class of each of the six kinds."""
