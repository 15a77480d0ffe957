"""The engine's overhead at 256 peers (bench_engine's ratio, median of 3), optionally under another sharing rule.

    python benchmarks/bench_causal_payloads.py [equal_share|max_min]

Run it from a checkout of each commit to compare (e.g. one before causal payloads, in a git
worktree, with no argument there: that code has only the equal-share rule).
"""
import statistics, sys
sys.path.insert(0, "benchmarks")  # run from the repository root
import bench_engine as b
sharing = sys.argv[1] if len(sys.argv) > 1 else None
if sharing:
    original = b.scenario_for
    b.scenario_for = lambda *a, **k: original(*a, **k).with_overrides({"network.sharing": sharing})
b.measure(16, 40)
for network in ("home", "datacenter"):
    runs = [b.measure(256, 320, network) for _ in range(3)]
    ratio = statistics.median(r["ratio"] for r in runs)
    m = min(runs, key=lambda r: abs(r["ratio"] - ratio))
    print(f"{sharing or 'default'} {network} steps={m['steps']} batch={m['mean_batch']:.2f} sim={m['simulate_s']:.2f} raw={m['raw_s']:.2f} ratio={ratio:.2f}", flush=True)
