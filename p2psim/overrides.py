"""Dotted-path overrides of a scenario dict: `--set`, `Scenario.with_overrides` and sweep axes share these rules.

Three rules make one field enough to change a scenario's scale or shape:
- setting `peers.count` turns the mixes given as counts into fractions, so they scale with it;
- setting one share (`peers.devices.rx_580 = 0.5`, a float) rescales the mix's other entries to the rest;
- setting `topology.kind` replaces the topology table (keeping `mixing`): the previous kind's
  parameters do not carry over to a kind that does not take them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from .config import ScenarioError

__all__ = ["MIXES", "apply_overrides", "set_dotted"]

MIXES = ("devices", "links", "regions")
KIND_TABLES = {"topology.kind": ("topology", ("mixing",))}  # field -> (table it replaces, keys kept)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `data`'s field at a dotted path (``"peers.jitter"``, ``"baselines[0].lr"``) in place.

    >>> data = {"peers": {"jitter": 0.0}}
    >>> set_dotted(data, "peers.jitter", 0.2); data
    {'peers': {'jitter': 0.2}}
    """
    keys = re.sub(r"\[(\d+)\]", r".\1", dotted).split(".")  # baselines[0].lr == baselines.0.lr
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            _require_item(node, key, ".".join(keys[: i + 1]))
            node = node[int(key)]
        elif isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            raise ScenarioError(dotted, "cannot set a key inside a value")
    last = keys[-1]
    if isinstance(node, list):
        _require_item(node, last, dotted)
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = copy.deepcopy(value)
    else:
        raise ScenarioError(dotted, "cannot set a key inside a value")


def _require_item(node: list, key: str, dotted: str) -> None:
    if not (key.isdigit() and int(key) < len(node)):
        raise ScenarioError(dotted, "no such list item")


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the scenario dict `data` with dotted overrides set, under the module's three rules.

    >>> base = {"peers": {"count": 4, "devices": {"a": 3, "b": 1}, "links": {"fibre": 4}}}
    >>> apply_overrides(base, {"peers.count": 8})["peers"]
    {'count': 8, 'devices': {'a': 0.75, 'b': 0.25}, 'links': {'fibre': 1.0}}
    >>> apply_overrides(base, {"peers.devices.c": 0.5})["peers"]["devices"]
    {'a': 0.375, 'b': 0.125, 'c': 0.5}
    >>> apply_overrides({"topology": {"kind": "random_regular", "degree": 4}}, {"topology.kind": "ring"})["topology"]
    {'kind': 'ring'}
    """
    data = copy.deepcopy(dict(data))
    for key, (table, kept) in KIND_TABLES.items():
        if key in overrides and isinstance(data.get(table), Mapping):
            data[table] = {name: value for name, value in data[table].items() if name in kept}
    shares: dict[str, dict[str, float]] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "peers" and parts[1] in MIXES and isinstance(value, float):
            shares.setdefault(parts[1], {})[parts[2]] = value
        else:
            set_dotted(data, key, value)
    peers = data.get("peers", {})
    if "peers.count" in overrides:
        for mix in MIXES:
            if _is_counts(peers.get(mix)):
                peers[mix] = _fractions(peers[mix])
    for mix, chosen in shares.items():
        peers[mix] = _with_shares(peers.get(mix) or {}, chosen, f"peers.{mix}")
    return data


def _is_counts(mix: Any) -> bool:
    return isinstance(mix, Mapping) and bool(mix) and all(isinstance(v, int) and not isinstance(v, bool) for v in mix.values())


def _fractions(mix: Mapping[str, int | float]) -> dict[str, float]:
    total = sum(mix.values())
    return {name: value / total for name, value in mix.items()} if total > 0 else dict(mix)


def _with_shares(mix: Mapping[str, int | float], chosen: Mapping[str, float], field_name: str) -> dict[str, float]:
    """`mix` as fractions with the `chosen` shares set; the other entries share the rest in proportion."""
    for name, share in chosen.items():
        if not 0.0 <= share <= 1.0:
            raise ScenarioError(f"{field_name}.{name}", f"a share must be in [0, 1], got {share!r}")
    rest = 1.0 - sum(chosen.values())
    if rest < -1e-9:
        raise ScenarioError(field_name, f"shares set sum to {sum(chosen.values()):.6g}, more than 1")
    base = _fractions(mix)
    others = {name: v for name, v in base.items() if name not in chosen}
    weight = sum(others.values())
    if rest > 1e-9 and weight <= 0:
        raise ScenarioError(field_name, f"no entry left to take the remaining share {rest:.6g}")
    scaled = {name: v * rest / weight for name, v in others.items()} if weight > 0 else dict.fromkeys(others, 0.0)
    return {**scaled, **chosen}
