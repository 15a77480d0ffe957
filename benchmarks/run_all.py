"""The benchmark suite of issue 12 in one command: prints one table per benchmark.

    python benchmarks/run_all.py                    # everything, CPU (tens of minutes on 2 cores)
    python benchmarks/run_all.py --quick            # smoke sizes: runs in about a minute
    python benchmarks/run_all.py --only floor scale --device cuda   # the GPU part (5)

1. floor: simulator wall / batched floor. The floor is the wall time of evaluating the
   same number of gradients, same model and batch size, as n-row vmapped calls
   (n = peer count) in the same process and on the same device: what the gradients
   would cost if all peers always computed together. Home-link world (the quick
   start's device and link mix) and data-centre world (the same devices on NVLink).
2. fedavg: FedAvg, 100 IID clients of digits, MLP 64-128-10, 5 local SGD steps of batch 16
   per round, 20 rounds: p2psim against one torch module per client in a Python loop and a
   hand-written vmap loop (the floor); Flower's simulation of it (benchmarks/fedavg_flower.py) with
   --flower-python PATH, a python where flwr is installed (not a project dependency).
3. events: simpy events per second of wall time in a communication-only run (push gossip
   of a 6-parameter model, no gradients).
4. scale: the largest peer count that runs 50 local steps each (AD-PSGD, data-centre world,
   generated logistic regression) within the time and memory limits; each size in its own
   process, with its peak memory per peer and where the memory goes.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, grad_and_value, vmap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from p2psim.algorithms.base import IMPLEMENTATIONS, Algorithm, AlgorithmConfig, register_algorithm  # noqa: E402
from p2psim.build import build_run  # noqa: E402
from p2psim.compute_device import resolve_device, task_on  # noqa: E402
from p2psim.dataflow import Dataflow  # noqa: E402
from p2psim.engine import RunOutcome, World  # noqa: E402
from p2psim.scenario import Scenario, load_scenario  # noqa: E402
from p2psim.uniform import UniformIndices  # noqa: E402

QUICKSTART = ROOT / "experiments" / "scenarios" / "quickstart.toml"
DIGITS_TRAIN = 1438  # digits' training split at eval_fraction 0.2: the digits MLP runs up to this many peers


# ----- the batched floor ---------------------------------------------------------------


def floor_calls(gradients: int, rows: int) -> list[int]:
    """Row counts of the vmapped calls that evaluate `gradients` gradients `rows` at a time.

    >>> floor_calls(10, 4)
    [4, 4, 2]
    """
    full, rest = divmod(gradients, rows)
    return [rows] * full + ([rest] if rest else [])


def gradient_function(task):
    """The engine's own per-row gradient: vmap of grad_and_value of the task's loss."""

    def loss_of(flat, x, y):
        return task.loss(functional_call(task.model, task.unflatten(flat), (x,)), y)

    return vmap(grad_and_value(loss_of))


def batched_floor_s(task, gradients: int, rows: int, batch: int, evaluate=None, seed: int = 0) -> float:
    """Wall time of `gradients` gradients of `task` at `batch` samples each, as `rows`-row vmapped calls."""
    evaluate = evaluate or gradient_function(task)
    device = task.initial_params.device
    k = min(rows, gradients)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(len(task.x_train), (k * batch,), generator=generator).to(device)
    params = task.initial_params.unsqueeze(0).repeat(k, 1)
    x = task.x_train.index_select(0, index).view(k, batch, *task.x_train.shape[1:])
    y = task.y_train.index_select(0, index).view(k, batch, *task.y_train.shape[1:])
    evaluate(params[:1], x[:1], y[:1])  # first-call costs are not the floor's
    _synchronize(device)
    start = time.perf_counter()
    for size in floor_calls(gradients, k):
        evaluate(params[:size], x[:size], y[:size])
    _synchronize(device)
    return time.perf_counter() - start


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def world_scenario(peers: int, world: str, task: str, algorithm: str, steps: int, device: str, numerics: str) -> Scenario:
    """The quick start's device mix scaled to `peers`: home links in seven regions, or NVLink in one place."""
    base = load_scenario(QUICKSTART)
    share = lambda mix: {k: v / base.peers.count for k, v in mix.items()}  # noqa: E731
    overrides = {
        "peers.count": peers,
        "peers.devices": share(base.peers.devices),
        "peers.links": share(base.peers.links) if world == "home" else {"nvlink": 1.0},
        "peers.regions": share(base.peers.regions) if world == "home" else {},
        "data.partition": "iid",
        "stop.samples": None,
        "stop.steps": peers * steps,
        "metrics.eval_interval_s": 1e9,  # a record at the start and at the end only
        "metrics.target_accuracy": None,
        "metrics.sample_peers": 256,
        "baselines": [],
        "engine.device": device,
        "engine.numerics": numerics,
        "algorithm": {"name": algorithm, "lr": 0.05},
    }
    if task == "logistic":
        overrides["task"] = {"name": "logistic", "n_samples": 40 * peers, "n_features": 64, "n_classes": 10, "eval_fraction": 0.05}
    return base.with_overrides(overrides)


def floor_row(peers: int, world: str, task: str, algorithm: str, steps: int, device: str, numerics: str) -> dict:
    """One simulation run twice, cold then warm (the ratio's: the floor is measured warm too), then its batched floor.

    `cold_s` is the first run's wall: torch's first calls at this scenario's shapes (vmap, allocations).
    """
    scenario = world_scenario(peers, world, task, algorithm, steps, device, numerics)
    cold, _, _ = _timed_run(scenario)
    wall, simulation, outcome = _timed_run(scenario)
    computed = outcome.info["gradients_computed"]
    floor = batched_floor_s(simulation.setup.task, computed, peers, scenario.data.batch_size)
    return {
        "world": world, "task": task, "algorithm": algorithm, "peers": peers, "device": device,
        "numerics": outcome.info["numerics"], "gradients": computed, "mean_batch": outcome.info["mean_gradient_batch"],
        "events": _events(simulation), "cold_s": cold, "simulate_s": wall, "floor_s": floor, "ratio": wall / floor,
    }


def _timed_run(scenario: Scenario) -> tuple[float, World, RunOutcome]:
    """The wall seconds of one run of `scenario` (built before the clock starts), its World and its outcome."""
    setup = build_run(scenario)
    torch.set_num_threads(setup.scenario.engine.threads)
    world = World(setup)
    start = time.perf_counter()
    outcome = world.run()
    _synchronize(world.params.device)
    return time.perf_counter() - start, world, outcome


def _events(world: World) -> int:
    """Events the simpy environment scheduled (its tie-breaking counter): stale completions of reshared flows included."""
    return int(repr(world.env._eid)[len("count(") : -1])


# ----- FedAvg against the usual ways -------------------------------------------------------


@dataclass(frozen=True)
class FedAvgJob:
    """The same job for every implementation."""

    clients: int = 100
    rounds: int = 20
    local_steps: int = 5
    batch: int = 16
    lr: float = 0.1
    hidden: int = 128
    seed: int = 0


def fedavg_p2psim(job: FedAvgJob, device: str, numerics: str = "deferred") -> dict:
    """p2psim's FedAvg: a server and `clients` workers co-located on NVLink, every client every round."""
    scenario = Scenario.from_dict({
        "name": "fedavg-bench", "seed": job.seed,
        "task": {"name": "digits_mlp", "hidden": [job.hidden]},
        "data": {"batch_size": job.batch, "partition": "iid"},
        "peers": {"count": job.clients + 1, "devices": {"h100_sxm": 1.0}, "links": {"nvlink": 1.0}},
        "topology": {"kind": "star"},
        "algorithm": {"name": "fedavg", "lr": job.lr, "local_steps": job.local_steps},
        # one step past the last round's: the run ends after the server has averaged round `rounds`
        "stop": {"steps": job.rounds * job.local_steps * job.clients + 1},
        "metrics": {"eval_interval_s": 1e9},
        "engine": {"device": device, "numerics": numerics},
    })
    setup = build_run(scenario)
    torch.set_num_threads(1)
    world = World(setup)
    start = time.perf_counter()
    outcome = world.run()
    _synchronize(world.params.device)
    wall = time.perf_counter() - start
    rounds = sum(1 for r in world.algorithm.rounds if r.index < job.rounds)
    return {"implementation": f"p2psim ({outcome.info['numerics']} numerics)", "wall_s": wall, "rounds": rounds,
            "accuracy": outcome.history[-1]["accuracy"], "mean_batch": outcome.info["mean_gradient_batch"]}


def _shards(task, job: FedAvgJob) -> list[np.ndarray]:
    order = np.random.default_rng(job.seed).permutation(len(task.y_train))
    return np.array_split(order, job.clients)


def fedavg_torch_loop(job: FedAvgJob, task) -> dict:
    """One torch module per client, trained in a Python loop, the state dicts averaged by the server."""
    torch.manual_seed(job.seed)  # benchmark code, not library code: a global seed for the modules' init
    rng = np.random.default_rng(job.seed)
    shards = _shards(task, job)
    device = task.initial_params.device

    def module() -> torch.nn.Module:
        net = torch.nn.Sequential(torch.nn.Linear(64, job.hidden), torch.nn.ReLU(), torch.nn.Linear(job.hidden, 10))
        with torch.no_grad():  # the same initial model as the other implementations
            for parameter, value in zip(net.parameters(), task.unflatten(task.initial_params).values()):
                parameter.copy_(value)
        return net.to(device)

    server = module()
    clients = [module() for _ in range(job.clients)]
    start = time.perf_counter()
    for _ in range(job.rounds):
        state = server.state_dict()
        for client, shard in zip(clients, shards):
            client.load_state_dict(state)
            optimizer = torch.optim.SGD(client.parameters(), lr=job.lr)
            for _ in range(job.local_steps):
                index = torch.from_numpy(shard[rng.integers(0, len(shard), job.batch)]).to(device)
                optimizer.zero_grad()
                task.loss(client(task.x_train[index]), task.y_train[index]).backward()
                optimizer.step()
        states = [c.state_dict() for c in clients]
        server.load_state_dict({k: torch.stack([s[k] for s in states]).mean(dim=0) for k in state})
    _synchronize(device)
    wall = time.perf_counter() - start
    with torch.no_grad():
        accuracy = float((server(task.x_eval).argmax(dim=1) == task.y_eval).float().mean())
    return {"implementation": "torch module per client, Python loop", "wall_s": wall, "accuracy": accuracy, "rounds": job.rounds}


def fedavg_vmap_loop(job: FedAvgJob, task) -> dict:
    """The floor: all clients as rows of one tensor, each local step one vmapped gradient call."""
    rng = np.random.default_rng(job.seed)
    shards = _shards(task, job)
    evaluate = gradient_function(task)
    model = task.initial_params.clone()
    start = time.perf_counter()
    for _ in range(job.rounds):
        rows = model.unsqueeze(0).repeat(job.clients, 1)
        for _ in range(job.local_steps):
            index = torch.from_numpy(np.concatenate([s[rng.integers(0, len(s), job.batch)] for s in shards])).to(model.device)
            x = task.x_train[index].view(job.clients, job.batch, -1)
            y = task.y_train[index].view(job.clients, job.batch)
            grads, _ = evaluate(rows, x, y)
            rows.sub_(grads, alpha=job.lr)
        model = rows.mean(dim=0)
    _synchronize(model.device)
    wall = time.perf_counter() - start
    output = functional_call(task.model, task.unflatten(model), (task.x_eval,))
    accuracy = float((output.argmax(dim=1) == task.y_eval).float().mean())
    return {"implementation": "hand-written vmap loop (floor)", "wall_s": wall, "accuracy": accuracy, "rounds": job.rounds}


FLOWER = "Flower simulation (Ray)"


def flower_arguments(job: FedAvgJob) -> list[str]:
    """benchmarks/fedavg_flower.py's command-line arguments for this job.

    >>> flower_arguments(FedAvgJob(clients=3))[:4]
    ['--clients', '3', '--rounds', '20']
    """
    values = {"clients": job.clients, "rounds": job.rounds, "local-steps": job.local_steps, "batch": job.batch,
              "lr": job.lr, "hidden": job.hidden, "seed": job.seed}
    return [item for name, value in values.items() for item in (f"--{name}", str(value))]


def flower_row(stdout: str) -> dict:
    """The row fedavg_flower.py printed: its last line of output is one JSON object (Ray logs come before)."""
    return json.loads(stdout.strip().splitlines()[-1])


def fedavg_flower(job: FedAvgJob, python: str | None) -> dict:
    """Flower's simulation of the job, run by `python` (one with flwr) in its own process; or why not."""
    if python is None:
        return {"implementation": FLOWER, "rounds": "not installed (--flower-python PATH: a python with flwr)"}
    command = [python, str(ROOT / "benchmarks" / "fedavg_flower.py"), *flower_arguments(job)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        return {"implementation": FLOWER, "rounds": f"failed: {last}"}
    return flower_row(done.stdout)


# ----- events per second -------------------------------------------------------------------


@dataclass(frozen=True)
class PushGossipConfig(AlgorithmConfig):
    """No options: communication only."""


class PushGossip(Algorithm):
    """Communication only: every peer keeps one model in flight to a random neighbour, merged where it lands."""

    name = "bench_push_gossip"
    config_class = PushGossipConfig

    def start(self) -> None:
        self._draws = UniformIndices(self.world.rng)
        for peer in range(self.world.n_peers):
            self._push(peer)

    def _push(self, peer: int) -> None:
        world = self.world
        neighbours = world.neighbors[peer]
        partner = neighbours[self._draws.below(len(neighbours))]
        world.send(peer, partner, world.model_bytes, "model", row=world.param_rows[peer])

    def on_message(self, message) -> None:
        self.world.mix_row(message.dst, message.row, 0.5)
        self._push(message.dst)


def events_scenario(peers: int, sim_time_s: float) -> Scenario:
    """Push gossip of a 6-parameter model over a random 4-regular graph of home fibre links, for `sim_time_s`."""
    if PushGossip.name not in IMPLEMENTATIONS:
        register_algorithm(PushGossip)
    return Scenario.from_dict({
        "name": "events", "seed": 0,
        "task": {"name": "logistic", "n_samples": 4 * peers, "n_features": 2, "n_classes": 2},
        "peers": {"count": peers, "devices": {"h100_sxm": 1.0}, "links": {"fibre": 1.0}},
        "topology": {"kind": "random_regular", "degree": 4},
        "algorithm": {"name": PushGossip.name, "lr": 0.1},
        "stop": {"sim_time_s": sim_time_s},
        "metrics": {"eval_interval_s": 1e9, "sample_peers": 64},
    })


def events_row(peers: int, sim_time_s: float) -> dict:
    """Events and messages per wall second of `events_scenario`, warm: a run of a tenth of `sim_time_s` comes first."""
    scenario = events_scenario(peers, sim_time_s)
    _timed_run(scenario.with_overrides({"stop.sim_time_s": sim_time_s / 10}))
    wall, world, outcome = _timed_run(scenario)
    events, messages = _events(world), outcome.info["messages"]
    return {"peers": peers, "messages": messages, "events": events, "wall_s": wall, "events_per_s": events / wall,
            "messages_per_s": messages / wall}


# ----- scale -------------------------------------------------------------------------------


def scale_scenario(peers: int, steps: int, device: str, numerics: str) -> Scenario:
    """Generated logistic regression (16 samples a peer), AD-PSGD, H100s on NVLink, 256 sampled peers recorded."""
    return Scenario.from_dict({
        "name": "scale", "seed": 0,
        "task": {"name": "logistic", "n_samples": 16 * peers, "n_features": 20, "n_classes": 4, "eval_fraction": 0.01},
        "data": {"batch_size": 16},
        "peers": {"count": peers, "devices": {"h100_sxm": 1.0}, "links": {"nvlink": 1.0}, "jitter": 0.1},
        "topology": {"kind": "random_regular", "degree": 4},
        "algorithm": {"name": "adpsgd", "lr": 0.1},
        "stop": {"steps": peers * steps},
        "metrics": {"eval_interval_s": 1e9, "sample_peers": 256},
        "engine": {"device": device, "numerics": numerics},
    })


def scale_child(peers: int, steps: int, device: str, numerics: str, trace_memory: bool = False) -> dict:
    """Run one size (in a child process); its wall times by stage, peak memory and the tensors' share of it.

    `*_cpu_s` are this process's CPU seconds (on a shared machine, the work done, where wall
    time counts the neighbours too); `gc_s` is the time Python's cyclic garbage collector ran
    during the run. `trace_memory`
    (slower: tracemalloc) adds the Python and numpy memory by module at its largest dataflow flush.
    """
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace_memory:  # a tiny run first, so that what it imports (torch's functorch, sympy) is not counted per peer
        World(build_run(scale_scenario(16, 1, device, numerics))).run()
    traced = _MemoryAtFlush(peers) if trace_memory else None  # traces the build too
    build_cpu = time.process_time()
    stages = [time.perf_counter()]
    scenario = scale_scenario(peers, steps, device, numerics)  # validation builds (and caches) the graph
    stages.append(time.perf_counter())
    setup = build_run(scenario)
    stages.append(time.perf_counter())
    world = World(setup)
    stages.append(time.perf_counter())
    build_cpu_s = time.process_time() - build_cpu
    collecting = _GcClock()
    start, run_cpu = time.perf_counter(), time.process_time()
    outcome = world.run()
    run_s, run_cpu_s = time.perf_counter() - start, time.process_time() - run_cpu
    collecting.stop()
    task = setup.task
    row_bytes = world.params.shape[1] * world.params.element_size()
    tensors = {
        "params": world.params.numel() * world.params.element_size(),
        "snapshots": 0 if world._snapshots is None else world._snapshots.numel() * world._snapshots.element_size(),
        "payload pool": world.pool.capacity * row_bytes,
        "task data": sum(t.numel() * t.element_size() for t in (task.x_train, task.y_train, task.x_eval, task.y_eval)),
    }
    if world._dataflow is not None:
        tensors["gradient rows"] = world._dataflow.peak_gradient_rows * row_bytes  # the most held at once (waves' outputs)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "peers": peers, "steps": outcome.info["steps"], "status": outcome.info["status"], "numerics": outcome.info["numerics"],
        "build_s": stages[-1] - stages[0], "validate_s": stages[1] - stages[0], "build_run_s": stages[2] - stages[1],
        "world_s": stages[3] - stages[2], "build_cpu_s": build_cpu_s, "run_cpu_s": run_cpu_s,
        "run_s": run_s, "gc_s": collecting.seconds, "peak_rss_gb": peak_kb / 2**20, "import_rss_gb": baseline_kb / 2**20,
        "tensor_bytes": tensors, "spectral_gap": outcome.info.get("spectral_gap"),
        "gpu_peak_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0,
        **({} if traced is None else {"traced_bytes_per_peer": traced.by_module()}),
    }


class _GcClock:
    """Seconds Python's cyclic garbage collector runs from now until `stop` (through `gc.callbacks`)."""

    def __init__(self):
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def stop(self) -> None:
        gc.callbacks.remove(self._tick)


class _MemoryAtFlush:
    """tracemalloc's snapshot when the traced memory is largest at the start of a dataflow flush (the op log is fullest)."""

    def __init__(self, peers: int):
        self.peers = peers
        self.largest = 0
        self.snapshot = None
        tracemalloc.start(1)
        flush = Dataflow.flush

        def flush_traced(dataflow: Dataflow) -> None:
            current, _ = tracemalloc.get_traced_memory()
            if current > self.largest:
                self.largest, self.snapshot = current, tracemalloc.take_snapshot()
            flush(dataflow)

        Dataflow.flush = flush_traced

    def by_module(self, top: int = 12) -> dict[str, float]:
        """Bytes a peer by the module that allocated them (p2psim's by file, others by package), largest first."""
        sizes: dict[str, float] = {}
        for stat in self.snapshot.statistics("filename") if self.snapshot is not None else []:
            path = Path(stat.traceback[0].filename)
            name = f"p2psim/{path.relative_to(ROOT / 'p2psim')}" if ROOT / "p2psim" in path.parents else (
                path.parts[path.parts.index("site-packages") + 1] if "site-packages" in path.parts else "other")
            sizes[name] = sizes.get(name, 0.0) + stat.size / self.peers
        ranked = sorted(sizes.items(), key=lambda item: -item[1])
        return {**dict(ranked[:top]), "rest": sum(size for _, size in ranked[top:])}


def scale_rows(sizes: list[int], steps: int, device: str, numerics: str, limit_s: float, memory_gb: float) -> list[dict]:
    """Each size in its own process, in increasing order, until one fails the time or memory limit."""
    rows = []
    for peers in sizes:
        command = [sys.executable, __file__, "--scale-child", str(peers), "--steps", str(steps), "--device", device,
                   "--numerics", numerics]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=limit_s)
        except subprocess.TimeoutExpired:
            rows.append({"peers": peers, "status": f"over {limit_s:.0f} s"})
            break
        if done.returncode != 0:
            rows.append({"peers": peers, "status": f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}"})
            break
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["total_s"] = time.perf_counter() - started
        rows.append(row)
        if row["peak_rss_gb"] > memory_gb:
            row["status"] = f"over {memory_gb:g} GB"
            break
    return rows


# ----- the command -------------------------------------------------------------------------


def print_table(title: str, rows: list[dict], columns: list[str]) -> None:
    """A markdown table of `columns` (floats to 3 significant digits)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            cells.append(f"{value:.3g}" if isinstance(value, float) else str(value))
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes (CPU: about a minute)")
    parser.add_argument("--only", nargs="+", choices=["floor", "fedavg", "events", "scale"], default=["floor", "fedavg", "events", "scale"])
    parser.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"], help="floor and scale: one or both")
    parser.add_argument("--numerics", default="deferred", choices=["eager", "deferred"])
    parser.add_argument("--peers", type=int, nargs="+", help="floor: peer counts (default 64 256 1024 4096)")
    parser.add_argument("--algorithms", nargs="+", default=["adpsgd", "gossip", "dpsgd"])
    parser.add_argument("--worlds", nargs="+", default=["home", "datacenter"], choices=["home", "datacenter"])
    parser.add_argument("--steps", type=int, help="local steps per peer (floor default 10, scale 50)")
    parser.add_argument("--scale-peers", type=int, nargs="+", help="scale: sizes tried in order")
    parser.add_argument("--scale-limit-s", type=float, default=600.0)
    parser.add_argument("--scale-memory-gb", type=float, default=16.0)
    parser.add_argument("--flower-python", help="fedavg: a python with flwr installed, to run Flower's row (see fedavg_flower.py)")
    parser.add_argument("--json", help="also write every row to this JSON file")
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trace-memory", action="store_true", help="scale child: memory by module at the largest flush (slow)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.scale_child:
        print(json.dumps(scale_child(args.scale_child, args.steps or 50, args.device[0], args.numerics, args.trace_memory)))
        return {}

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"one torch thread; devices: {', '.join(args.device)}"
          + (f" ({torch.cuda.get_device_name()})" if "cuda" in args.device else ""))
    results: dict[str, list[dict]] = {}
    quick = args.quick
    if "floor" in args.only:
        peers = args.peers or ([16, 48] if quick else [64, 256, 1024, 4096])
        steps = args.steps or (2 if quick else 10)
        algorithms = args.algorithms[:1] if quick else args.algorithms
        floor_row(8, "datacenter", "digits", "adpsgd", 1, args.device[0], args.numerics)  # warm-up: imports, vmap
        rows = []
        for device in args.device:
            for world in args.worlds:
                for algorithm in algorithms:
                    for n in peers:
                        task = "digits" if n <= DIGITS_TRAIN else "logistic"
                        rows.append(floor_row(n, world, task, algorithm, steps, device, args.numerics))
        results["floor"] = rows
        print_table(f"1. simulator wall (warm: a second run; cold_s: the first) / batched floor ({steps} local steps a peer)", rows,
                    ["world", "task", "algorithm", "peers", "device", "numerics", "gradients", "mean_batch", "events",
                     "cold_s", "simulate_s", "floor_s", "ratio"])
    if "fedavg" in args.only:
        job = FedAvgJob(clients=10, rounds=2) if quick else FedAvgJob()
        task = build_run(Scenario.from_dict({
            "name": "t", "task": {"name": "digits_mlp", "hidden": [job.hidden]}, "peers": {"count": 2, "devices": {"h100_sxm": 2}, "links": {"nvlink": 2}},
            "algorithm": {"name": "adpsgd", "lr": 0.1}, "stop": {"steps": 1}, "metrics": {"eval_interval_s": 1.0}})).task
        rows = []
        for device in args.device:
            on_device = task_on(task, resolve_device(device))
            fedavg_p2psim(FedAvgJob(clients=4, rounds=1), device, args.numerics)  # warm-up: first-call costs are not the run's
            fedavg_vmap_loop(FedAvgJob(clients=4, rounds=1), on_device)
            block = [fedavg_p2psim(job, device, args.numerics), fedavg_torch_loop(job, on_device), fedavg_vmap_loop(job, on_device)]
            if device == "cpu":
                block.append(fedavg_flower(job, args.flower_python))
            for row in block:
                row["device"] = device
                if "wall_s" in row:
                    row["x_floor"] = row["wall_s"] / block[2]["wall_s"]
            rows += block
        results["fedavg"] = rows
        print_table(f"2. FedAvg, {job.clients} IID clients of digits, MLP 64-{job.hidden}-10, {job.local_steps} local steps "
                    f"of batch {job.batch}, {job.rounds} rounds", rows,
                    ["implementation", "device", "rounds", "wall_s", "x_floor", "accuracy", "mean_batch"])
        flower = next((row for row in rows if "warm_up_s" in row), None)
        if flower:
            print(f"\nFlower's wall is its rounds, warm: before them, starting the Ray actors and loading the data took "
                  f"{flower['warm_up_s']:.3g} s; the whole simulation, Ray started and stopped, {flower['total_s']:.3g} s.")
    if "events" in args.only:
        rows = [events_row(n, 0.05 if quick else 1.0) for n in ([256] if quick else [1024, 4096])]
        results["events"] = rows
        print_table("3. events per second, communication only (push gossip of 6 parameters over home fibre, CPU)", rows,
                    ["peers", "messages", "events", "wall_s", "events_per_s", "messages_per_s"])
    if "scale" in args.only:
        rows = []
        sizes = args.scale_peers or ([64, 256] if quick else [10_000, 30_000, 100_000, 200_000])
        for device in args.device:
            for row in scale_rows(sizes, args.steps or (2 if quick else 50), device, args.numerics, args.scale_limit_s, args.scale_memory_gb):
                row["device"] = device
                if "peak_rss_gb" in row:
                    row["kb_per_peer"] = (row["peak_rss_gb"] - row["import_rss_gb"]) * 2**20 / row["peers"]
                    row["tensor_kb_per_peer"] = sum(row["tensor_bytes"].values()) / 1024 / row["peers"]
                rows.append(row)
        results["scale"] = rows
        print_table("4. scale: AD-PSGD, generated logistic regression (20 features, 4 classes), 16 samples a peer", rows,
                    ["device", "peers", "status", "steps", "numerics", "build_s", "run_s", "run_cpu_s", "gc_s", "peak_rss_gb", "gpu_peak_gb",
                     "kb_per_peer", "tensor_kb_per_peer"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
