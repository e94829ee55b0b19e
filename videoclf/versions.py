"""Installed package versions, read from package metadata (no imports of the packages)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """``{package: version}`` for those of ``packages`` that are installed."""
    out = {}
    for package in packages:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out
