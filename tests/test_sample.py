import numpy as np
import pytest

from videoclf.features.sample import derive_sequences, derived_positions, uniform_indices


def test_uniform_indices_follow_the_seed_rule():
    assert uniform_indices(100, 4).tolist() == [0, 25, 50, 75]
    assert uniform_indices(20, 20).tolist() == list(range(20))
    assert uniform_indices(3, 8).tolist() == [0, 1, 2]  # short clip: every frame, rest is padding


@pytest.mark.parametrize("n_frames", [1, 7, 19, 20, 21, 37, 150, 301])
@pytest.mark.parametrize("length", [1, 2, 4, 5, 10, 20])
def test_derived_equals_direct_sampling_for_divisors(n_frames, length):
    max_length = 20
    cached = uniform_indices(n_frames, max_length)  # frame index held at each cached position
    positions = derived_positions(len(cached), max_length, length)
    assert cached[positions].tolist() == uniform_indices(n_frames, length).tolist()


def test_derived_is_close_for_other_lengths():
    n_frames, max_length, length = 150, 20, 7
    cached = uniform_indices(n_frames, max_length)
    got = cached[derived_positions(max_length, max_length, length)]
    assert np.all(np.abs(got - uniform_indices(n_frames, length)) < n_frames / max_length)


def test_derive_sequences_masks_padding():
    features = np.arange(2 * 4 * 1, dtype=np.float32).reshape(2, 4, 1)
    stored = np.array([4, 1])
    out, mask = derive_sequences(features, stored, 2)
    assert out[:, :, 0].tolist() == [[0, 2], [4, 0]]
    assert mask.tolist() == [[True, True], [True, False]]
    with pytest.raises(ValueError):
        derived_positions(4, 4, 5)
