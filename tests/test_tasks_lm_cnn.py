"""The transformer language model and the CNN: sizes by closed form, exact per-row gradients, loaders, learning."""

import copy
import pickle
import sysconfig
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad, vmap

import p2psim
from p2psim.config import ScenarioError
from p2psim.metrics import Evaluator
from p2psim.tasks import CNN, TASKS, TransformerLM
from p2psim.tasks.cnn import cnn_param_count
from p2psim.tasks.transformer_lm import STDLIB_MODULES, transformer_param_count

SCENARIO = Path(__file__).parent.parent / "experiments" / "scenarios" / "transformer_lm.toml"
LM = TransformerLM(layers=2, width=16, heads=4, context=8, corpus_bytes=3000)
SMALL_CNN = CNN(channels=(4, 8), groups=2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """As the engine runs (engine.threads = 1): small ops on a shared machine are far slower with more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_cifar(folder: Path, n_per_batch: int = 10, n_batches: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 python batches as the dataset ships them (dict of b"data" uint8 [n, 3072], b"labels")."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for b in range(1, n_batches + 1):
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        label = [(b + i) % 10 for i in range(n_per_batch)]
        with open(folder / f"data_batch_{b}", "wb") as handle:
            pickle.dump({b"batch_label": b"training batch", b"data": data, b"labels": label}, handle)
        images.append(data)
        labels += label
    return np.concatenate(images), np.array(labels)


def real_module(task, flat):
    """A materialised copy of the template holding `flat`."""
    module = copy.deepcopy(task.model).to_empty(device="cpu")
    torch.nn.utils.vector_to_parameters(flat, module.parameters())
    return module


def loss_of(task):
    """The engine's f(flat, x, y) (DESIGN decision 5)."""
    return lambda flat, x, y: task.loss(functional_call(task.model, task.unflatten(flat), (x,)), y)


def test_both_tasks_are_registered_by_name():
    assert TASKS["transformer_lm"] is TransformerLM and TASKS["cnn"] is CNN


def test_transformer_param_count_by_hand():
    # d = 8, context 4, vocab 10, one block: 80 + 32 embeddings, 12*64 + 13*8 = 872 block, 16 final norm, 80 + 10 head
    assert transformer_param_count(layers=1, width=8, context=4, vocab=10) == 80 + 32 + 872 + 16 + 90


@pytest.mark.parametrize("layers, width, heads, context", [(1, 8, 1, 4), (2, 16, 4, 8), (3, 24, 3, 16)])
def test_transformer_params_and_shapes_match_the_closed_form(layers, width, heads, context):
    task = TransformerLM(layers=layers, width=width, heads=heads, context=context, corpus_bytes=2000).build(0)
    assert task.n_params == transformer_param_count(layers, width, context) == task.initial_params.numel()
    out = functional_call(task.model, task.unflatten(task.initial_params), (task.x_eval[:3],))
    assert out.shape == (3, context, 256)
    assert task.x_train.shape[1:] == task.y_train.shape[1:] == (context,)


def test_cnn_param_count_by_hand():
    # conv 1->4: 36 + 4, norm 8; conv 4->8: 288 + 8, norm 16; 8 channels x 2 x 2 -> 10: 320 + 10
    assert cnn_param_count(1, 8, (4, 8)) == 48 + 312 + 330


@pytest.mark.parametrize("channels, groups", [((4,), 1), ((4, 8), 2), ((2, 4, 6), 2)])
def test_cnn_params_and_shapes_match_the_closed_form(channels, groups):
    task = CNN(channels=channels, groups=groups).build(0)
    assert task.n_params == cnn_param_count(1, 8, channels) == task.initial_params.numel()
    out = functional_call(task.model, task.unflatten(task.initial_params), (task.x_eval[:5],))
    assert out.shape == (5, 10)


@pytest.mark.parametrize("task", [LM, SMALL_CNN, CNN(channels=(8,), groups=8, eval_fraction=0.5)], ids=str)
def test_sizes_arithmetic_agrees_with_the_build(task):
    sizes, built = task.sizes(), task.build(0)
    assert (sizes.n_train, sizes.n_eval) == (len(built.x_train), len(built.x_eval))
    assert sizes.n_features == built.x_train.shape[1]
    if isinstance(task, CNN):
        assert sizes.n_classes == built.n_classes == 10
        assert sizes.train_class_counts == tuple(np.bincount(built.y_train.numpy(), minlength=10))
    else:
        # a sample has a target per position, not one label: no label-skewed partitions
        assert sizes.n_classes is None and sizes.train_class_counts is None and built.n_classes == 256


@pytest.mark.parametrize("task", [LM, SMALL_CNN], ids=["lm", "cnn"])
def test_vmapped_row_gradients_equal_autograd_of_each_row(task):
    built = task.build(0)
    rows = built.initial_params + 0.05 * torch.randn(3, built.n_params, generator=torch.Generator().manual_seed(0))
    x, y = built.x_train[:6], built.y_train[:6]
    batched = vmap(grad(loss_of(built)), in_dims=(0, None, None))(rows, x, y)
    for row, got in zip(rows, batched):
        module = real_module(built, row)
        built.loss(module(x), y).backward()
        expected = torch.cat([p.grad.reshape(-1) for p in module.parameters()])
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert batched.abs().max() > 1e-3
    assert not torch.allclose(batched[0], batched[1])  # rows differ, so do their gradients


def test_lm_samples_are_consecutive_corpus_bytes_with_next_byte_targets(tmp_path):
    text = bytes(range(256)) * 3 + b"tail"
    path = tmp_path / "corpus.bin"
    path.write_bytes(text)
    task = TransformerLM(layers=1, width=8, heads=2, context=10, corpus=str(path), corpus_bytes=10**6, eval_fraction=0.25)
    built = task.build(0)
    x, y = torch.cat([built.x_train, built.x_eval]), torch.cat([built.y_train, built.y_eval])
    assert len(x) == (len(text) - 1) // 10  # the whole file: corpus_bytes is an upper bound
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one byte
    windows = sorted(bytes(row) + bytes([last]) for row, last in zip(x.tolist(), y[:, -1].tolist()))
    assert windows == sorted(text[i * 10 : i * 10 + 11] for i in range(len(x)))


def test_default_corpus_is_the_stdlib_sources_in_order():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = b"".join((stdlib / name).read_bytes() for name in STDLIB_MODULES if (stdlib / name).is_file())
    built = TransformerLM(layers=1, width=8, heads=2, context=16, corpus_bytes=5000).build(0)
    assert len(built.x_train) + len(built.x_eval) == (5000 - 1) // 16
    first = torch.cat([built.x_train, built.x_eval])
    assert any(bytes(row) == text[:16] for row in first.tolist())


def test_lm_is_causal_a_later_byte_never_changes_an_earlier_prediction():
    built = LM.build(0)
    x = built.x_eval[:2].clone()
    before = functional_call(built.model, built.unflatten(built.initial_params), (x,))
    x[:, 5] = (x[:, 5] + 1) % 256
    after = functional_call(built.model, built.unflatten(built.initial_params), (x,))
    assert torch.equal(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_lm_loss_is_mean_cross_entropy_per_byte_and_accuracy_is_next_byte_accuracy():
    built = LM.build(0)
    logits = functional_call(built.model, built.unflatten(built.initial_params), (built.x_eval,))
    log_p = logits.log_softmax(dim=-1).gather(-1, built.y_eval.unsqueeze(-1)).squeeze(-1)
    loss, accuracy = Evaluator(built).single(built.initial_params)
    assert loss == pytest.approx(float(-log_p.mean()), rel=1e-5)
    assert accuracy == pytest.approx(float((logits.argmax(-1) == built.y_eval).double().mean()), abs=1e-6)
    assert loss == pytest.approx(np.log(256), abs=0.1)  # N(0, 0.02) init: near-uniform over bytes


@pytest.mark.parametrize("task", [LM, SMALL_CNN], ids=["lm", "cnn"])
def test_a_few_sgd_steps_lower_the_loss(task):
    built = task.build(0)
    f = loss_of(built)
    flat, x, y = built.initial_params.clone(), built.x_train[:64], built.y_train[:64]
    start = float(f(flat, x, y))
    for _ in range(10):
        flat = flat - 0.5 * grad(f)(flat, x, y)
    assert float(f(flat, x, y)) < start - 0.1


def test_cifar_loader_reads_the_python_batches(tmp_path):
    images, labels = write_cifar(tmp_path)
    task = CNN(dataset="cifar10", cifar_dir=str(tmp_path), channels=(4,), groups=2, eval_fraction=0.5)
    built = task.build(0)
    assert task.sizes().n_train + task.sizes().n_eval == 20 and built.x_train.shape[1] == 3072
    x = torch.cat([built.x_train, built.x_eval]).numpy()
    y = torch.cat([built.y_train, built.y_eval]).numpy()
    expected = images / np.float32(255.0)
    order_got, order_expected = np.lexsort(x.T), np.lexsort(expected.T)
    assert np.array_equal(x[order_got], expected[order_expected].astype(np.float32))
    assert np.array_equal(y[order_got], labels[order_expected])
    assert task.sizes().train_class_counts == tuple(np.bincount(built.y_train.numpy(), minlength=10))
    out = functional_call(built.model, built.unflatten(built.initial_params), (built.x_eval,))
    assert out.shape == (len(built.x_eval), 10) and built.n_params == cnn_param_count(3, 32, (4,))


def test_cifar_folder_without_batches_is_an_error_naming_the_field(tmp_path):
    (tmp_path / "readme.txt").write_text("no batches here")
    with pytest.raises(ScenarioError, match="data_batch_1") as error:
        CNN(dataset="cifar10", cifar_dir=str(tmp_path))
    assert error.value.field == "cifar_dir"
    data = tomllib.loads(SCENARIO.read_text())
    data["task"] = {"name": "cnn", "dataset": "cifar10", "cifar_dir": str(tmp_path / "missing")}
    with pytest.raises(ScenarioError) as error:
        p2psim.Scenario.from_dict(data)
    assert error.value.field == "task.cifar_dir"


@pytest.mark.parametrize("options, field", [
    ({"dataset": "mnist"}, "dataset"),
    ({"channels": (4, 4, 4, 4)}, "channels"),
    ({"channels": (6,), "groups": 4}, "groups"),
])
def test_bad_cnn_options_name_their_field(options, field):
    with pytest.raises(ScenarioError) as error:
        CNN(**options)
    assert error.value.field == field


@pytest.mark.parametrize("options, field", [
    ({"width": 10, "heads": 4}, "heads"),
    ({"corpus": "/no/such/file.txt"}, "corpus"),
    ({"context": 4000, "corpus_bytes": 5000}, "context"),
])
def test_bad_lm_options_name_their_field(options, field):
    with pytest.raises(ScenarioError) as error:
        TransformerLM(**options)
    assert error.value.field == field
