"""Block-drawn uniform choices are numpy's `rng.integers(k)`, call after call, rejections and block ends included."""

import numpy as np
import pytest

from p2psim.uniform import BLOCK, UniformIndices


def test_the_same_choices_as_integers_for_every_kind_of_bound():
    # 2**31 + 1 rejects almost half of the words, 2**32 takes a word as it is, 1 takes none
    bounds = np.random.default_rng(7).choice([1, 2, 3, 4, 5, 9, 1000, 2**31 + 1, 3 * 2**30 + 7, 2**32 - 1, 2**32], size=5 * BLOCK)
    numpy_rng, block_rng = np.random.default_rng(11), np.random.default_rng(11)
    draws = UniformIndices(block_rng)
    assert [draws.below(int(k)) for k in bounds] == [int(numpy_rng.integers(int(k))) for k in bounds]


def test_a_single_choice_draws_no_word():
    numpy_rng, block_rng = np.random.default_rng(3), np.random.default_rng(3)
    draws = UniformIndices(block_rng)
    assert [draws.below(1) for _ in range(5)] == [0] * 5
    assert draws.below(2**31 + 1) == numpy_rng.integers(2**31 + 1)  # the first word is still the generator's first


@pytest.mark.parametrize("k", [0, -3, 2**32 + 1])
def test_a_bound_outside_numpys_32_bit_path_is_refused(k):
    with pytest.raises(ValueError, match="k must be in 1..2\\*\\*32"):
        UniformIndices(np.random.default_rng(0)).below(k)
