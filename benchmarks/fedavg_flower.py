"""Benchmark 2's FedAvg job in Flower's simulation engine: prints wall time and final accuracy as one JSON line.

The job of ``benchmarks/run_all.py``'s FedAvgJob: 100 IID clients over digits' training split (the
shards of run_all's ``_shards``), MLP 64-128-10 from the same initial parameters, 5 local SGD steps of
batch 16 at lr 0.1, 20 rounds, every client every round (FedAvg, fraction_train 1.0, equal weights as
p2psim's and the torch loop's), accuracy of the final global model on the same 359 held-out samples.
Flower is not a project dependency, so this runs only by hand, in a venv that shares this torch:

    python -m venv --system-site-packages /tmp/flwr-venv      # sees torch and p2psim: no CUDA torch pulled
    /tmp/flwr-venv/bin/pip install "flwr[simulation]"          # measured with flwr 1.42.0, ray 2.55.1
    /tmp/flwr-venv/bin/python benchmarks/fedavg_flower.py      # or: run_all.py --only fedavg --flower-python /tmp/flwr-venv/bin/python

The data and initial model come from p2psim's own digits task (seed 0), imported in the venv; nothing
else of p2psim runs. Each client draws its batches from its own stream (seed, client, round), so the
draws differ from the other implementations'. Before the rounds, one query message to every client
starts the Ray actors, loads the data and runs one throwaway local training in each (``warm_up_s``);
``wall_s`` is then the rounds alone (Flower's strategy loop), warm; ``total_s`` is the whole
simulation, starting and stopping Ray included.
"""

from __future__ import annotations

import argparse
import json
import time

import flwr
import numpy as np
import ray
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from p2psim.build import build_task
from p2psim.tasks.digits_mlp import DigitsMLP


def digits(hidden: int, seed: int):
    """p2psim's digits task: the split and initial parameters run_all uses (cached per process)."""
    return build_task(DigitsMLP(hidden=(hidden,)), seed)


def shards(n_train: int, clients: int, seed: int) -> list[np.ndarray]:
    """run_all's IID shards: a seeded permutation of the training indices in `clients` near-equal parts."""
    return np.array_split(np.random.default_rng(seed).permutation(n_train), clients)


def network(hidden: int) -> torch.nn.Sequential:
    """The MLP 64-hidden-10 as a torch module (the same layers as p2psim's digits MLP)."""
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def initial_state(hidden: int, seed: int) -> dict[str, torch.Tensor]:
    """The state dict of p2psim's initial parameters for this seed."""
    task = digits(hidden, seed)
    names = network(hidden).state_dict().keys()
    return {name: value.clone() for name, value in zip(names, task.unflatten(task.initial_params).values())}


def local_sgd(net: torch.nn.Module, config: ConfigRecord, client: int, server_round: int) -> None:
    """The client's local steps: SGD on batches drawn with replacement from its shard."""
    hidden, seed, clients = int(config["hidden"]), int(config["seed"]), int(config["clients"])
    steps, batch, lr = int(config["local-steps"]), int(config["batch"]), float(config["lr"])
    task = digits(hidden, seed)
    shard = shards(len(task.y_train), clients, seed)[client]
    rng = np.random.default_rng([seed, client, server_round])
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        index = torch.from_numpy(shard[rng.integers(0, len(shard), batch)])
        optimizer.zero_grad()
        task.loss(net(task.x_train[index]), task.y_train[index]).backward()
        optimizer.step()


client_app = ClientApp()


@client_app.query()
def warm_up(message: Message, context: Context) -> Message:
    """Load the task and run one throwaway local training in this actor, so that the timed rounds start warm."""
    torch.set_num_threads(1)
    config = message.content["config"]
    local_sgd(network(int(config["hidden"])), config, int(context.node_config["partition-id"]), 0)
    return Message(content=RecordDict(), reply_to=message)


@client_app.train()
def train(message: Message, context: Context) -> Message:
    """Local SGD on this client's shard from the received global model; the model and its weight go back."""
    torch.set_num_threads(1)
    config = message.content["config"]
    net = network(int(config["hidden"]))
    net.load_state_dict(message.content["arrays"].to_torch_state_dict())
    local_sgd(net, config, int(context.node_config["partition-id"]), int(config["server-round"]))
    weight = int(config["local-steps"]) * int(config["batch"])  # samples processed: equal weights, as p2psim's
    reply = RecordDict({"arrays": ArrayRecord(net.state_dict()), "metrics": MetricRecord({"num-examples": weight})})
    return Message(content=reply, reply_to=message)


def server_app(args: argparse.Namespace, outcome: dict) -> ServerApp:
    """A warm-up query to every client, then FedAvg over every client every round; `outcome` gets the times and the final model."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=args.clients,
                          min_available_nodes=args.clients)
        config = ConfigRecord({"hidden": args.hidden, "seed": args.seed, "clients": args.clients,
                               "local-steps": args.local_steps, "batch": args.batch, "lr": args.lr})
        start = time.perf_counter()
        while len(nodes := list(grid.get_node_ids())) < args.clients:
            time.sleep(0.1)
        replies = grid.send_and_receive([Message(RecordDict({"config": config}), node, MessageType.QUERY) for node in nodes])
        assert all(not reply.has_error() for reply in replies), "a client's warm-up failed"
        outcome["warm_up_s"] = time.perf_counter() - start
        ends = outcome["round_ends"] = []

        def clock(server_round: int, arrays: ArrayRecord) -> None:
            """Flower's centralized-evaluation hook, called before round 1 and after each round: the round clock."""
            ends.append(time.perf_counter())

        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(initial_state(args.hidden, args.seed)),
                                num_rounds=args.rounds, train_config=config, evaluate_fn=clock)
        outcome["final"] = result.arrays.to_torch_state_dict()

    return app


def accuracy(state: dict[str, torch.Tensor], hidden: int, seed: int) -> float:
    """Share of the held-out samples the model classifies right."""
    task = digits(hidden, seed)
    net = network(hidden)
    net.load_state_dict(state)
    with torch.no_grad():
        return float((net(task.x_eval).argmax(dim=1) == task.y_eval).float().mean())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--local-steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray: one client actor per CPU")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    outcome: dict = {}
    backend = {"init_args": {"num_cpus": args.cpus, "include_dashboard": False},
               "client_resources": {"num_cpus": 1, "num_gpus": 0.0}}
    start = time.perf_counter()
    run_simulation(server_app(args, outcome), client_app, num_supernodes=args.clients, backend_config=backend)
    total = time.perf_counter() - start
    ends = outcome["round_ends"]
    rounds = np.diff(ends)
    row = {"implementation": "Flower simulation (Ray)", "rounds": args.rounds, "wall_s": ends[-1] - ends[0],
           "warm_up_s": outcome["warm_up_s"], "median_round_s": float(np.median(rounds)), "total_s": total,
           "accuracy": accuracy(outcome["final"], args.hidden, args.seed), "flwr": flwr.__version__, "ray": ray.__version__,
           "actors": args.cpus}
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    main()
