"""testbed's built-in plugins. Installed as `testbed_plugins` and registered through the
`testbed.plugins` entry-point group, exactly as a third-party package would be."""
