"""Power, energy, carbon and money as pure functions of modelled time (DESIGN: energy from virtual time).

codecarbon and zeus meter the machine running the simulation; p2psim needs the power of
the *simulated* devices, so it integrates modelled power over virtual time. The power
rule is linear between idle and busy: a device computing a fraction u of an interval
draws on average idle + (busy - idle) x u, the linear model of server power in
utilisation of Fan, Weber and Barroso, "Power provisioning for a warehouse-sized
computer", ISCA 2007. Busy power is the device's board power (TDP) by default: training
kernels run the card near its power limit [assumption]. Because the engine records each
peer's computing fraction as an exact integral over each recording interval, and the
rule is linear, busy/idle energy totals are exact; only their placement in time within
an interval (which hour's carbon intensity applies) has the interval's resolution.

>>> round(energy_kwh(power_w=300.0, seconds=10 * 3600, count=4, pue=1.5), 6)
18.0
>>> round(operational_gco2(18.0, 450.0), 6)
8100.0
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "J_PER_KWH",
    "average_power_w",
    "embodied_gco2",
    "energy_kwh",
    "interval_energy_kwh",
    "interval_mean_intensity",
    "operational_gco2",
]

J_PER_KWH = 3.6e6
SECONDS_PER_HOUR = 3600.0
HOURS_PER_YEAR = 8760.0


def average_power_w(computing_fraction: np.ndarray | float, idle_w: np.ndarray | float, busy_w: np.ndarray | float) -> np.ndarray:
    """Mean power over an interval in which a device computed `computing_fraction` of the time: linear in it.

    >>> float(average_power_w(0.25, idle_w=100.0, busy_w=500.0))
    200.0
    """
    return np.asarray(idle_w) + (np.asarray(busy_w) - np.asarray(idle_w)) * np.asarray(computing_fraction)


def energy_kwh(power_w: float, seconds: float, count: int = 1, pue: float = 1.0, host_factor: float = 1.0) -> float:
    """kWh drawn from the grid by `count` devices at `power_w` for `seconds`, times host overhead and PUE."""
    return power_w * host_factor * pue * count * seconds / J_PER_KWH


def interval_energy_kwh(
    times_s: np.ndarray, computing: np.ndarray, idle_w: np.ndarray, busy_w: np.ndarray, factor: np.ndarray,
    offline: np.ndarray | None = None,
) -> np.ndarray:
    """kWh per recording interval and peer: [ticks, peers].

    `times_s` are the ticks' times (the first interval starts at 0), `computing` each peer's
    computing fraction over the interval ending at each tick, `factor` each peer's host
    overhead x PUE. A peer draws idle power whenever it is neither computing nor offline
    (waiting, sending); offline (`offline`, the same shape: churn), it draws nothing.
    """
    durations = np.diff(np.asarray(times_s, dtype=np.float64), prepend=0.0)
    power = average_power_w(computing, idle_w, busy_w)
    if offline is not None:
        power = power - np.asarray(idle_w) * offline
    power = power * factor
    return power * durations[:, None] / J_PER_KWH


def operational_gco2(kwh: np.ndarray | float, gco2_per_kwh: np.ndarray | float) -> np.ndarray | float:
    """Grams of CO2 of `kwh` drawn at a grid intensity of `gco2_per_kwh`."""
    return kwh * gco2_per_kwh


def embodied_gco2(kgco2: float, lifetime_years: float, seconds: float) -> float:
    """Manufacture emissions charged to `seconds` of use: kgCO2 x 1000 over the lifetime's hours, per hour used.

    >>> embodied_gco2(150.0, 5.0, 3600.0)  # 150 kg over 43,800 h: 3.42 g an hour
    3.4246575342465753
    """
    return kgco2 * 1000.0 / (lifetime_years * HOURS_PER_YEAR) * seconds / SECONDS_PER_HOUR


def interval_mean_intensity(hourly: pd.Series, start: pd.Timestamp, times_s: np.ndarray) -> np.ndarray:
    """Mean gCO2/kWh over each interval [previous tick, tick] (the first from 0), from an hourly series.

    `hourly` is indexed by whole UTC hours covering the intervals and holds the intensity
    of each hour; the mean is the exact integral of this step function over the interval
    divided by its length (the value at the tick itself for a zero-length interval).
    """
    times_s = np.asarray(times_s, dtype=np.float64)
    edges = (hourly.index - start).total_seconds().to_numpy()
    values = hourly.to_numpy(dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(values * SECONDS_PER_HOUR)])
    grid = np.concatenate([edges, [edges[-1] + SECONDS_PER_HOUR]])
    integral = np.interp(times_s, grid, cumulative)
    lows = np.concatenate([[0.0], times_s[:-1]])
    lengths = times_s - lows
    at = values[np.clip(np.searchsorted(grid, times_s, side="right") - 1, 0, len(values) - 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (integral - np.interp(lows, grid, cumulative)) / lengths
    return np.where(lengths > 0, means, at)
