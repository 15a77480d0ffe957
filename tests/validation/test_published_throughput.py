"""The compute model against published per-GPU training throughput (ResNet-50, BERT-large), within stated factors.

Published rates (mixed precision, per GPU; every figure's source beside it):
- ResNet-50, MLPerf Training v3.0, NVIDIA closed division, 1 x DGX H100 (8 x H100 SXM), MXNet:
  `tracked_stats.throughput` of about 56,050 images/s per node in epochs 20-35 -> 7,006 per GPU
  (github.com/mlcommons/training_results_v3.0, NVIDIA/results/dgxh100_ngc23.04_mxnet/resnet/result_0.txt).
- ResNet-50, MLPerf Training v2.0, NVIDIA closed division, 1 x DGX A100 (8 x A100 80GB), MXNet:
  about 27,180 images/s per node -> 3,397 per GPU
  (github.com/mlcommons/training_results_v2.0, NVIDIA/results/dgxa100_ngc22.04_mxnet/resnet/result_0.txt).
- ResNet-50 v1.5, NVIDIA DeepLearningExamples, PyTorch 21.03, 1 GPU, AMP: A100 80GB 2,470 images/s,
  V100 16GB 1,200 images/s (github.com/NVIDIA/DeepLearningExamples,
  PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Training performance results").
- BERT-large pre-training, sequence 128, NVIDIA DeepLearningExamples, PaddlePaddle 22.12, 1 x A100 80GB,
  mixed precision: 694 sequences/s (PaddlePaddle/LanguageModeling/BERT/README.md, "Pre-training NVIDIA
  DGX A100 (8x A100 80GB)").

ResNet-50's cost is the workload catalogue's (p2psim/data/workloads.toml: 2.454e10 training FLOPs and
25.557e6 parameters per 224 x 224 image) with 5e7 B of 16-bit activations per image (the catalogue's
1e8 B of float32, halved, as the quick start declares). BERT-large: 24 layers, d 1024, vocabulary
30,522, 335e6 parameters (Devlin et al. 2019); FLOPs per sequence of T tokens by PaLM's
6 (N - V d) T + 12 L d T^2 (Appendix B); activations 44 T d L bytes (Korthikanti et al. 2022,
Eq. 1 without recomputation: 34 + 5 a T / d with a = 16 heads).
"""

from __future__ import annotations

import pytest

from p2psim.footprint import step_work, work_time_s
from p2psim.hardware import load_devices

RESNET50 = {"params": 25.557e6, "flops": 2.454e10, "activations": 5e7}
RESNET50_PUBLISHED = [  # device, images/s per GPU, source
    ("h100_sxm", 7006.0, "MLPerf Training v3.0, DGX H100, MXNet"),
    ("a100_sxm_80gb", 3397.0, "MLPerf Training v2.0, DGX A100, MXNet"),
    ("a100_sxm_80gb", 2470.0, "NVIDIA DeepLearningExamples, PyTorch, 1 GPU"),
    ("v100_sxm2", 1200.0, "NVIDIA DeepLearningExamples, PyTorch, 1 GPU"),
]
FACTOR = 1.35  # stated: every ResNet-50 prediction within 1.35x of its published rate, either way
BATCH = 256


def samples_per_s(device: str, params: float, flops: float, activations: float, batch: int, optimizer: str,
                  utilisation: float | None = None) -> float:
    """Predicted training samples per second on one device, mixed precision, no overhead."""
    work = step_work(params, flops * batch, "fp16", optimizer, batch, activations)
    return batch / work_time_s(work, load_devices()[device], "fp16", utilisation)


@pytest.mark.parametrize("device, published, source", RESNET50_PUBLISHED, ids=[f"{d}-{s.split(',')[0]}" for d, _, s in RESNET50_PUBLISHED])
def test_resnet50_images_per_second_within_the_stated_factor(device, published, source):
    predicted = samples_per_s(device, RESNET50["params"], RESNET50["flops"], RESNET50["activations"], BATCH, "momentum")
    assert 1 / FACTOR <= predicted / published <= FACTOR, f"{device}: {predicted:.0f} predicted, {published:.0f} ({source})"


def test_h100_is_no_longer_compute_bound_on_resnet50():
    """The review's finding: FLOPs alone put the H100 at ~10,000 images/s, 1.44x MLPerf's 7,006; memory binds it."""
    device = load_devices()["h100_sxm"]
    compute_only = device.fp16_tflops * 1e12 * device.utilisation / RESNET50["flops"]
    assert compute_only / 7006.0 > 1.4
    predicted = samples_per_s("h100_sxm", RESNET50["params"], RESNET50["flops"], RESNET50["activations"], BATCH, "momentum")
    assert predicted < 0.7 * compute_only
    # and the H100-to-A100 ratio stays between the bandwidth ratio (1.64) and the compute ratio (3.17); MLPerf: 2.06
    a100 = samples_per_s("a100_sxm_80gb", RESNET50["params"], RESNET50["flops"], RESNET50["activations"], BATCH, "momentum")
    assert 3350 / 2039 <= predicted / a100 <= 989 / 312


def bert_large(tokens: int) -> tuple[float, float, float]:
    """(parameters, training FLOPs, 16-bit activation bytes) per sequence of `tokens` tokens."""
    layers, d, vocab, params = 24, 1024, 30522, 335e6
    flops = 6 * (params - vocab * d) * tokens + 12 * layers * d * tokens**2
    return params, flops, (34 + 5 * 16 * tokens / d) * tokens * d * layers


def test_bert_large_at_the_catalogue_efficiency_is_about_half_the_tuned_rate():
    """Stated gap: NVIDIA's fused BERT reaches ~53% of the A100's peak; the catalogue's 0.25 is for plain eager torch.

    At the catalogue's efficiency the model predicts 0.4-0.6 of the published 694 sequences/s
    (compute-bound); at the utilisation that benchmark reaches it is within 1.1x. A scenario
    standing for a tuned stack says so with peers.utilisation, or calibrates.
    """
    params, flops, activations = bert_large(128)
    assert flops == pytest.approx(2.38e11, rel=0.01)
    default = samples_per_s("a100_sxm_80gb", params, flops, activations, 64, "adam")
    assert 0.4 <= default / 694.0 <= 0.6
    achieved_mfu = 694.0 * flops / 312e12
    tuned = samples_per_s("a100_sxm_80gb", params, flops, activations, 64, "adam", utilisation=achieved_mfu)
    assert tuned / 694.0 == pytest.approx(1.0, rel=0.1)
