"""What Byzantine peers send: every row they give `World.send` is replaced by an attack's row.

A Byzantine peer runs the protocol honestly on its own row (it computes, merges what it
receives, keeps the algorithm's schedule) and lies in every row it sends: its gradient to
a server, its model to a neighbour. Messages keep their size and timing; only the row
changes, so attackers act through the network like everyone else. The attacks, on a row r:
- `sign_flip`: -r.
- `scaled`: scale x r (`adversary.scale`, default -10).
- `gaussian`: a draw from N(0, sigma^2 I) in place of r (Xie, Koyejo, Gupta, "Generalized
  Byzantine-tolerant SGD", 2018, https://arxiv.org/abs/1802.10116).
- `alie`, "a little is enough": mu - z sigma, coordinate-wise, from the honest rows' mean
  mu and standard deviation sigma (Baruch, Baruch, Goldberg, NeurIPS 2019,
  https://arxiv.org/abs/1902.06156); z defaults to the paper's z_max = Phi^-1((n - s)/n),
  s = floor(n/2 + 1) - f, with n the learners and f the Byzantine peers.
- `ipm`, inner-product manipulation: -epsilon mu (Xie, Koyejo, Gupta, "Fall of Empires:
  Breaking Byzantine-tolerant SGD by Inner Product Manipulation", UAI 2020,
  https://arxiv.org/abs/1903.03936).
- `replay`: the first row this peer sent of the same message kind, resent ever after (a
  stale gradient or model, as a peer replaying old traffic would send).

What `alie` and `ipm` read, and when: for each message kind (a gradient, a model, ...), the
latest row each honest peer has sent of that kind, as it left, up to the instant of the
attacker's send: an adversary that colludes and sees every honest transmission as it
leaves (stronger than one that waits for delivery; it never reads a row before it is
sent). mu and sigma are over those rows (sigma with divisor n, not n - 1). Before any
honest row of that kind has left, the attacker's own honest row stands for mu and sigma
is 0. The rows kept cost one [n, d] tensor per message kind, for these two attacks only.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import torch

from .adversary import AdversarySpec
from .seeding import stream

__all__ = ["Adversary", "alie_z"]


def alie_z(n: int, f: int) -> float:
    """Baruch et al.'s z_max: Phi^-1((n - s)/n) with s = floor(n/2 + 1) - f (at least 1), the peers it must win over.

    >>> round(alie_z(50, 12), 3)  # s = 26 - 12 = 14: Phi^-1(36/50)
    0.583
    """
    s = max(1, math.floor(n / 2 + 1) - f)
    return NormalDist().inv_cdf((n - s) / n)


class _LatestRows:
    """Per honest peer, the latest row it sent of one message kind; their mean and std, cached until one changes."""

    def __init__(self, n_peers: int, n_params: int, dtype: torch.dtype, device: torch.device):
        self.rows = torch.zeros(n_peers, n_params, dtype=dtype, device=device)
        self.sent = np.zeros(n_peers, dtype=bool)
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def put(self, peer: int, row: torch.Tensor) -> None:
        self.rows[peer].copy_(row)
        self.sent[peer] = True
        self._stats = None

    def stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mean, std) over the peers that have sent a row, or None before any has."""
        if self._stats is None and self.sent.any():
            rows = self.rows[torch.from_numpy(self.sent).to(self.rows.device)]
            self._stats = rows.mean(dim=0), rows.std(dim=0, correction=0)
        return self._stats


class Adversary:
    """The Byzantine peers' side of `World.send`: honest rows pass (and are observed), Byzantine rows are replaced."""

    def __init__(self, spec: AdversarySpec, byzantine: list[int], n_peers: int, n_learners: int, seed: int):
        self.spec = spec
        self.byzantine = list(byzantine)
        self.is_byzantine = np.zeros(n_peers, dtype=bool)
        self.is_byzantine[self.byzantine] = True
        self.z = spec.z if spec.z is not None else alie_z(n_learners, len(self.byzantine))
        self.rows_corrupted = 0
        self._n_peers = n_peers
        self._observes = spec.attack in ("alie", "ipm")
        self._latest: dict[str, _LatestRows] = {}
        self._first: dict[tuple[int, str], torch.Tensor] = {}
        self._rngs = {peer: stream(seed, "attack", peer) for peer in self.byzantine}

    def outgoing(self, src: int, kind: str, row: torch.Tensor) -> torch.Tensor:
        """The row that leaves `src` in a message of `kind`: `row` itself from an honest peer, the attack's otherwise."""
        if not self.is_byzantine[src]:
            if self._observes:
                self._rows_of(kind, row).put(src, row)
            return row
        self.rows_corrupted += 1
        return self._attack(src, kind, row)

    def _rows_of(self, kind: str, like: torch.Tensor) -> _LatestRows:
        if kind not in self._latest:
            self._latest[kind] = _LatestRows(self._n_peers, like.shape[0], like.dtype, like.device)
        return self._latest[kind]

    def _attack(self, src: int, kind: str, row: torch.Tensor) -> torch.Tensor:
        spec, attack = self.spec, self.spec.attack
        if attack == "sign_flip":
            return -row
        if attack == "scaled":
            return spec.scale * row
        if attack == "gaussian":
            noise = self._rngs[src].standard_normal(row.shape[0])
            return torch.from_numpy(noise).to(dtype=row.dtype, device=row.device) * spec.sigma
        if attack == "replay":
            return self._first.setdefault((src, kind), row.clone())
        stats = self._rows_of(kind, row).stats()
        mean, std = stats if stats is not None else (row, torch.zeros_like(row))
        if attack == "alie":
            return mean - self.z * std
        return -spec.epsilon * mean  # ipm
