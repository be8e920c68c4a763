"""Shared pytest configuration."""

pytest_plugins: list[str] = ["tests.support.services"]
