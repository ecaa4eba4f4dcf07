"""The version of compress (read by the package, the CLI, manifests and reports)."""

__version__ = "0.1.0"
