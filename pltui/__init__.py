"""pltui: a live terminal console for running a service on a fleet of flaky SSH nodes."""

__version__ = "0.1.0"
