"""Muster's shared runtime: settings, Temporal client, telemetry, metrics, health, canary."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("muster-runtime")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
