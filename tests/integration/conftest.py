"""Fixtures for fleet process tests: a home plus private redis-servers for the log and the broker."""

from support.fleet import fleet, fleet_servers

__all__ = ["fleet", "fleet_servers"]
