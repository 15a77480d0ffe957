"""What an algorithm is: hooks for a peer's finished computation and a message's arrival.

The engine owns time, the network and bookkeeping (DESIGN decision 6); an algorithm
only decides what a peer does next, through the `World` it is given. A new algorithm
is one file with a config dataclass and a subclass of `Algorithm`, registered by name.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeVar

from ..config import ScenarioError
from ..lazy import torch
from ..mixing import MixingReport
from ..optim import OptimizerSpec, ScheduleSpec

if TYPE_CHECKING:
    import networkx as nx

    from ..engine import GradientJob, Message, World

__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmConfig", "algorithm_catalogue", "format_algorithm_table", "register_algorithm"]


@dataclass(frozen=True)
class AlgorithmConfig:
    """Hyper-parameters shared by every algorithm; subclasses add their own fields."""

    name: ClassVar[str]
    lr: float
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and math.isfinite(self.lr) and self.lr > 0):
            raise ScenarioError("lr", f"must be a positive number, got {self.lr!r}")


class Algorithm:
    """Base class: a peer's behaviour when its gradient is ready and when a message arrives."""

    name: ClassVar[str]
    config_class: ClassVar[type[AlgorithmConfig]]
    needs_connected_graph: ClassVar[bool] = False
    # True when the hooks act on rows only through World (compute, send with a row of world.params or a
    # message's or job's row, consume, apply_gradient, mix_row, set_row, add_to_row, average_rows, and
    # world.rows for rows of their own) and read no value: then `engine.numerics = "deferred"` may record the
    # numerics and run them later (p2psim.dataflow)
    numerics_deferrable: ClassVar[bool] = False
    # what a Byzantine peer corrupts here (rows it sends through `World.send`); "" refuses an adversary, as where
    # peers' rows combine without a message carrying them and an attack could not act
    byzantine_surface: ClassVar[str] = ""
    # message kinds whose row is a gradient or a difference, not a model: a sparsifier and error feedback apply to them
    update_kinds: ClassVar[tuple[str, ...]] = ()
    carries_rows: ClassVar[bool] = True  # False: messages carry bytes only, the numerics average exactly
    # True when the hooks read `world.neighbors` afresh at each choice: churn's graph repair may then add edges
    repairs_graph: ClassVar[bool] = False

    def __init__(self, config: AlgorithmConfig, world: World):
        self.config = config
        self.world = world

    @classmethod
    def check_graph(cls, config: AlgorithmConfig, graph: nx.Graph) -> None:
        """Raise `ScenarioError` if the algorithm cannot run on `graph` with `config` (checked before a run)."""

    @classmethod
    def learners(cls, config: AlgorithmConfig, n_peers: int) -> list[int]:
        """The peers that compute gradients, and so hold a share of the training data: by default all."""
        return list(range(n_peers))

    @classmethod
    def defers_numerics(cls, config: AlgorithmConfig) -> bool:
        """Whether `config`'s hooks may run under deferred numerics: `numerics_deferrable`, unless an option reads values."""
        return cls.numerics_deferrable

    def mixing(self) -> MixingReport:
        """After the run: the spectral gap of the matrix this algorithm mixed with, and its definition."""
        return MixingReport(None, "not defined: this algorithm does not mix by a gossip matrix", "none")

    def evaluated_model(self) -> torch.Tensor:
        """The model the history's `loss` and `accuracy` describe: by default the honest peers' average."""
        return self.world.params[self.world.honest].mean(dim=0)

    def start(self) -> None:
        """At time zero: by default every peer starts computing."""
        for peer in range(self.world.n_peers):
            self.world.compute(peer)

    def on_gradient(self, job: GradientJob) -> None:
        """`job.peer` has finished computing `job.grad` on the parameters it held at `job.started_at`."""
        raise NotImplementedError

    def on_message(self, message: Message) -> None:
        """`message` has fully arrived at `message.dst`."""
        raise NotImplementedError

    def on_rejoin(self, peer: int) -> None:
        """`peer` is back online (p2psim.churn), its computation lost if one was running: by default it computes again."""
        if not self.world.is_computing(peer):
            self.world.compute(peer)

    def essential_peers(self) -> tuple[int, ...]:
        """Peers without which nothing can progress (a server): the run stalls when one of them crashes."""
        return ()


ALGORITHMS: dict[str, type[AlgorithmConfig]] = {}
IMPLEMENTATIONS: dict[str, type[Algorithm]] = {}

A = TypeVar("A", bound=type[Algorithm])


def register_algorithm(cls: A) -> A:
    """Class decorator: make an algorithm available by its `name` in scenarios."""
    if cls.name in IMPLEMENTATIONS:
        raise ValueError(f"algorithm {cls.name!r} is registered twice")
    cls.config_class.name = cls.name
    ALGORITHMS[cls.name] = cls.config_class
    IMPLEMENTATIONS[cls.name] = cls
    return cls


def algorithm_catalogue() -> list[tuple[str, str, str]]:
    """(name, what it does, its paper) for every registered algorithm, from its docstrings.

    The paper is the second paragraph of the algorithm's module docstring, where each
    algorithm file cites it; the summary is the class docstring's first line.
    """
    rows = []
    for name, cls in sorted(IMPLEMENTATIONS.items()):
        module = sys.modules[cls.__module__].__doc__ or ""
        paragraphs = [" ".join(p.split()) for p in module.split("\n\n") if p.strip()]
        paper = paragraphs[1] if len(paragraphs) > 1 else ""
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else paragraphs[0] if paragraphs else ""
        rows.append((name, summary, paper))
    return rows


def format_algorithm_table() -> str:
    """The catalogue as text, one algorithm a paragraph: name and rule, then its paper (what `p2psim algorithms` prints)."""
    lines = []
    for name, summary, paper in algorithm_catalogue():
        lines.append(f"{name:<18}{summary}")
        lines.append(f"{'':<18}{paper}")
    return "\n".join(lines)
