"""What every method with a central server shares: which peer serves, and that it does not compute.

The server is the peer at index `server` (default 0): its device, access link and region
are the ones the scenario's mixes place on that peer, it holds no training data (the data
is split among the workers), and its row holds the global model,
which is what the history's `loss` and `accuracy` describe. Workers talk to it directly
over the network (a star over the access links), whatever the topology says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ScenarioError
from ..lazy import torch
from .base import Algorithm, AlgorithmConfig

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["ServerAlgorithm", "ServerConfig"]


@dataclass(frozen=True)
class ServerConfig(AlgorithmConfig):
    """Adds the index of the peer that serves."""

    server: int = 0


class ServerAlgorithm(Algorithm):
    """Base for server methods: workers are every peer but `server`; the server's row is the model."""

    @classmethod
    def check_graph(cls, config: ServerConfig, graph: nx.Graph) -> None:
        n = graph.number_of_nodes()
        if not 0 <= config.server < n:
            raise ScenarioError("algorithm.server", f"must be a peer index in 0..{n - 1}, got {config.server!r}")
        if n < 2:
            raise ScenarioError("peers.count", f"a server method needs a server and at least one worker, got {n} peer")

    @classmethod
    def learners(cls, config: ServerConfig, n_peers: int) -> list[int]:
        return [peer for peer in range(n_peers) if peer != config.server]

    @property
    def server(self) -> int:
        """The serving peer's index."""
        return self.config.server

    @property
    def workers(self) -> list[int]:
        """Every peer but the server, in index order."""
        return [peer for peer in range(self.world.n_peers) if peer != self.config.server]

    def evaluated_model(self) -> torch.Tensor:
        return self.world.params[self.server]

    def essential_peers(self) -> tuple[int, ...]:
        return (self.server,)

    def on_rejoin(self, peer: int) -> None:
        """A returning worker computes again; the server, which never computes, waits for messages."""
        if peer != self.server:
            super().on_rejoin(peer)

    def start(self) -> None:
        for peer in self.workers:
            self.world.compute(peer)
