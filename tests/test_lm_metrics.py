"""Language-model specifics of the history and the budget: perplexity = exp(loss), and stored sample bytes."""

from __future__ import annotations

import numpy as np

import p2psim
from p2psim.tasks.transformer_lm import TransformerLM

TINY = {"task": {"name": "transformer_lm", "layers": 1, "width": 8, "heads": 2, "context": 8, "corpus_bytes": 4000},
        "data": {"batch_size": 4}, "peers": {"devices": {"rtx_4090": 3}, "links": {"fibre": 3}},
        "topology": {"kind": "ring"}, "algorithm": {"name": "dpsgd", "lr": 0.01}, "stop": {"samples": 64},
        "metrics": {"eval_interval_samples": 32}, "name": "tiny_lm", "seed": 0}


def test_lm_history_has_perplexity_exp_of_loss_and_the_summary_prints_it():
    result = p2psim.run(TINY, baselines=False)
    history = result.run_history()
    assert np.allclose(history["perplexity"], np.exp(history["loss"]), rtol=1e-12)
    assert f"perplexity={history['perplexity'].iloc[-1]:.4g}" in result.format_summary()


def test_classification_history_has_no_perplexity():
    scenario = {**TINY, "task": {"name": "logistic"}}
    assert "perplexity" not in p2psim.run(scenario, baselines=False).run_history()


def test_lm_stored_sample_is_int64_inputs_and_targets():
    assert TransformerLM(context=32).sizes().stored_sample_bytes == 16 * 32
