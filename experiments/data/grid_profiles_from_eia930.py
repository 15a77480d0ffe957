"""Typical day per month of grid carbon intensity, from EIA-930 hourly generation by fuel: writes grid_profiles.toml.

    python experiments/data/grid_profiles_from_eia930.py DIR > p2psim/data/grid_profiles.toml

DIR holds `<BA>_NG_&_avgCI.csv` for the balancing authorities below: EIA-930 hourly net
generation by energy source for 2022 (MW, UTC timestamps, public domain), as extracted in
HewlettPackard/dc-rl, data/CarbonIntensity/ (commit 79b99c5d60f75780f93d37a09b4f1eea7d027815,
MIT). Only the generation columns are read (not the file's own avg_CI): each hour's intensity
is the generation-weighted mean of the lifecycle factors below (negative net generation,
e.g. pumping, is counted as zero; hours with a missing fuel column are left out: 184 of 8760
for PJM, 21 for MISO, none for BPAT). `yearly_gco2_per_kwh` is the generation-weighted
mean over the year. This script runs once, offline; p2psim never downloads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

# region of regions.toml -> EIA balancing authority (the grid that serves the region's city)
REGIONS = {"us_east": "PJM", "us_west": "BPAT", "us_central": "MISO"}

# Lifecycle gCO2eq/kWh, IPCC AR5 WG3 Annex III (2014) Table A.III.2 medians: coal 820, gas
# (combined cycle) 490, hydro 24, nuclear 12, wind onshore 11, solar PV utility 48; oil 650 and
# other (biomass, geothermal, storage) 230 are assumptions (Electricity Maps' defaults; AR5 biomass median).
FACTORS = {"COL": 820.0, "NG": 490.0, "WAT": 24.0, "NUC": 12.0, "WND": 11.0, "SUN": 48.0, "OIL": 650.0, "OTH": 230.0}


def hourly_intensity(path: Path) -> tuple[pd.Series, float]:
    """gCO2eq/kWh per UTC hour from one balancing authority's generation mix, and the yearly weighted mean."""
    table = pd.read_csv(path, parse_dates=["timestamp"]).dropna(subset=list(FACTORS))
    mix = table[list(FACTORS)].clip(lower=0.0).to_numpy()
    emissions = mix @ np.array(list(FACTORS.values()))
    series = pd.Series(emissions / mix.sum(axis=1), index=pd.DatetimeIndex(table["timestamp"]).tz_convert("UTC"))
    return series, float(emissions.sum() / mix.sum())


def main(folder: str) -> None:
    print("# Hourly grid carbon intensity: a typical day per month, gCO2eq/kWh by UTC hour (generated file).")
    print("# Made by experiments/data/grid_profiles_from_eia930.py from EIA-930 2022 hourly generation by fuel")
    print("# (grids.toml sources E930, AR5); row m of `months` is month m+1, column h is h:00-h:59 UTC.")
    for region, authority in REGIONS.items():
        series, yearly = hourly_intensity(Path(folder) / f"{authority}_NG_&_avgCI.csv")
        frame = series.to_frame("g").assign(month=series.index.month, hour=series.index.hour)
        table = frame.pivot_table(index="month", columns="hour", values="g", aggfunc="mean")
        print(f"\n[profiles.{region}]")
        print(f'grid = "EIA balancing authority {authority}"')
        print("year = 2022")
        print(f"yearly_gco2_per_kwh = {yearly:.1f}")
        print('sources = ["E930", "AR5"]')
        print("months = [")
        for month in range(1, 13):
            print("  [" + ", ".join(f"{v:.1f}" for v in table.loc[month]) + "],")
        print("]")


if __name__ == "__main__":
    main(sys.argv[1])
