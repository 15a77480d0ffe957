"""The catalogues (devices, links, regions) shipped as package data, every number with its source."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["check_sources", "read_catalogue"]


def read_catalogue(filename: str) -> dict[str, Any]:
    """Parse one TOML file of this folder."""
    return tomllib.loads(resources.files(__name__).joinpath(filename).read_text(encoding="utf-8"))


def check_sources(where: str, ids: Sequence[str], sources: Mapping[str, str]) -> tuple[str, ...]:
    """The source ids of an entry: at least one, each resolving in the file's [sources] table."""
    unresolved = [s for s in ids if s not in sources]
    if not ids or unresolved:
        raise ValueError(f"{where}.sources: needs at least one id from [sources]; unresolved {unresolved}")
    return tuple(ids)
