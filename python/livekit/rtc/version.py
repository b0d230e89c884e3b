"""The package version, also reported to the server as the SDK version on join."""

__version__ = "0.1.0"
