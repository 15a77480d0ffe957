"""Seeding: `streams` gives exactly the generators `stream` gives, one per index."""

import numpy as np
import pytest

from p2psim.seeding import stream, streams


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 - 1, 2**32, 2**70 + 3])
@pytest.mark.parametrize("name", ["batches", "jitter", ""])
def test_streams_are_the_indexed_streams(seed, name):
    # numpy's own SeedSequence hash, one generator at a time, against the vectorised one
    made = streams(seed, name, 64)
    assert len(made) == 64
    for index, generator in enumerate(made):
        expected = stream(seed, name, index)
        assert generator.integers(0, 2**62, 4).tolist() == expected.integers(0, 2**62, 4).tolist()
        assert generator.random() == expected.random()


def test_streams_differ_between_indices_and_names():
    draws = [g.integers(0, 2**62) for g in streams(0, "batches", 8) + streams(0, "jitter", 8)]
    assert len(set(draws)) == 16


def test_streams_of_none():
    assert streams(0, "batches", 0) == []


def test_a_hashed_seed_is_given_once():
    generator = streams(0, "batches", 1)[0]
    with pytest.raises(ValueError, match="once"):
        generator.bit_generator.seed_seq.generate_state(4, np.uint64)
