"""The options of the network model: how links are shared, TCP, per-message overhead, bandwidth variability.

`NetworkModel` is the `[network]` table of a scenario (less its link profiles) and what
`network.Network` runs with. Each option is validated here, naming the field and the
allowed values. The TCP numbers carry their sources beside them:

- Mathis, Semke, Mahdavi & Ott, "The macroscopic behavior of the TCP congestion avoidance
  algorithm", ACM SIGCOMM CCR 27(3), 1997: throughput = MSS / (RTT sqrt(2p/3)).
- Velho & Legrand, "Accuracy study and improvement of network simulation in the SimGrid
  framework", SIMUTools 2009, and Velho, Schnorr, Casanova & Legrand, "On the validity of
  flow-level TCP network models for grid and cloud simulations", ACM TOMACS 23(4), 2013:
  the LV08 model; its values (latency x 13.01, bandwidth x 0.97, window bound
  TCP-gamma / (2 x latency) with TCP-gamma = 4 MiB) as SimGrid sets them in
  src/kernel/resource/models/network_cm02.cpp.
- RFC 6928 (initial window of 10 segments), RFC 5681 section 4.1 (restart after idle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import ScenarioError, bounded, check_ranges

__all__ = ["SHARING_RULES", "NetworkModel", "TcpSpec", "VariabilitySpec", "loss_limited_rate"]

SHARING_RULES = ("max_min", "equal_share")


@dataclass(frozen=True)
class TcpSpec:
    """Per-flow TCP behaviour: slow start, a window cap, a loss-limited rate, and LV08's correction factors.

    Each message is a flow that starts in slow start: its window is ``initial_window_segments``
    x ``mss_bytes`` and doubles every round trip (RTT = 2 x the path's one-way latency), so
    the flow's rate is at most window / RTT, until the window reaches ``max_window_bytes``.
    This assumes a connection idle since its last message restarts from the initial window
    (RFC 5681 section 4.1; Linux's default net.ipv4.tcp_slow_start_after_idle = 1).
    With ``loss_rate`` p > 0 the rate is also capped at Mathis et al.'s MSS / (RTT sqrt(2p/3)).
    ``bandwidth_factor`` scales every link's capacity (the goodput left after headers), and
    ``latency_factor`` the propagation latency; Velho & Legrand's LV08 values are 0.97 and
    13.01, where the 13.01 stands in for slow start in a model without it (SimGrid's
    ``network/model:LV08``): take it only with ``slow_start = false``.
    """

    slow_start: bool = True
    # RFC 6928 (2013): initial window of 10 segments
    initial_window_segments: int = bounded(10, low=1, high=1000)
    # 1500-byte Ethernet MTU less 20 B IPv4 and 20 B TCP headers (RFC 791, RFC 9293)
    mss_bytes: int = bounded(1460, low=1, high=65495, why="an IPv4 packet holds at most 65535 bytes")
    # Linux's default net.ipv4.tcp_wmem maximum (Documentation/networking/ip-sysctl.rst) and
    # SimGrid's default network/TCP-gamma: 4 MiB. Window scaling caps a window at 2**30 (RFC 7323).
    max_window_bytes: float = bounded(4194304.0, low=1, high=2**30)
    # packet loss probability for Mathis et al. (1997): 0 = no loss-limited cap
    loss_rate: float = bounded(0.0, low=0, high=1, high_open=True)
    # Velho & Legrand (2009), LV08: 0.97 of the link's capacity is goodput
    bandwidth_factor: float = bounded(0.97, low=0, high=1, low_open=True)
    # Velho & Legrand (2009), LV08: 13.01 when slow start is not modelled; 1 = the path's latency as is
    latency_factor: float = bounded(1.0, low=1, high=100)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.slow_start and self.latency_factor != 1.0:
            raise ScenarioError(
                "latency_factor",
                f"must be 1 when slow_start = true, got {self.latency_factor!r}: LV08's 13.01 stands in for "
                "slow start, which is then modelled (allowed: slow_start = false with latency_factor = 13.01, "
                "or slow_start = true with latency_factor = 1)",
            )
        if self.initial_window_segments * self.mss_bytes > self.max_window_bytes:
            raise ScenarioError(
                "max_window_bytes",
                f"must be at least the initial window, initial_window_segments x mss_bytes = "
                f"{self.initial_window_segments * self.mss_bytes}, got {self.max_window_bytes!r}",
            )

    @classmethod
    def lv08(cls) -> TcpSpec:
        """SimGrid's LV08 model: no explicit slow start, latency x 13.01, bandwidth x 0.97, 4 MiB window."""
        return cls(slow_start=False, latency_factor=13.01, bandwidth_factor=0.97)


def loss_limited_rate(mss_bytes: float, rtt_s: float, loss_rate: float) -> float:
    """Mathis et al. (1997) steady-state TCP throughput in bytes/s: MSS / (RTT sqrt(2p/3)); inf without loss.

    >>> round(loss_limited_rate(1460, 0.1, 0.01))  # 1 % loss at 100 ms: about 1.4 Mbit/s
    178813
    """
    if loss_rate == 0.0 or rtt_s == 0.0:
        return math.inf
    return mss_bytes / (rtt_s * math.sqrt(2.0 * loss_rate / 3.0))


@dataclass(frozen=True)
class VariabilitySpec:
    """Time-varying capacity: each link's capacity times a mean-one log-normal factor, redrawn every period.

    Factors are independent across links and periods and drawn from the scenario's seed.
    Sigma is an assumption to set, not a measurement.
    """

    # sigma of the log-normal factor; beyond 2 most periods have almost no capacity
    sigma: float = bounded(low=0, high=2)
    # length of a period in which every link's factor stays constant; 1e6 s is 11.6 days
    period_s: float = bounded(low=0, high=1e6, low_open=True)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class NetworkModel:
    """How messages share and use links: the sharing rule and optional TCP, overhead and variability."""

    sharing: str = "max_min"  # or "equal_share": each link split equally, unused capacity not redistributed
    tcp: TcpSpec | None = None  # None: a flow takes its share from its first byte
    # bytes added to every message on the wire (framing, headers); 1e9 B = 1 GB
    message_overhead_bytes: float = bounded(0.0, low=0, high=1e9)
    variability: VariabilitySpec | None = None  # None: capacities are constant

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.sharing not in SHARING_RULES:
            raise ScenarioError("sharing", f"unknown sharing rule {self.sharing!r} (allowed: {', '.join(SHARING_RULES)})")
