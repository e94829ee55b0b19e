import numpy as np
import pytest

from videoclf.features.sample import derive_sequences, derived_positions, uniform_indices


def test_uniform_indices_follow_the_seed_rule():
    assert uniform_indices(100, 4).tolist() == [0, 25, 50, 75]
    assert uniform_indices(20, 20).tolist() == list(range(20))
    assert uniform_indices(3, 8).tolist() == [0, 1, 2]  # short clip: every frame, rest is padding


@pytest.mark.parametrize("n_frames", [20, 21, 37, 150, 301])
@pytest.mark.parametrize("length", [1, 2, 4, 5, 10, 20])
def test_derived_equals_direct_sampling_for_divisors(n_frames, length):
    max_length = 20
    cached = uniform_indices(n_frames, max_length)  # frame index held at each cached position
    positions = derived_positions(len(cached), max_length, length)
    assert cached[positions].tolist() == uniform_indices(n_frames, length).tolist()


@pytest.mark.parametrize("n_frames", [1, 3, 7, 12, 19])
@pytest.mark.parametrize("length", [2, 4, 5, 7, 10, 20])
def test_short_clips_keep_one_regular_frame_rhythm(n_frames, length):
    # every frame of a short clip is cached; a shorter sequence never mixes step sizes
    positions = derived_positions(n_frames, 20, length)
    assert 1 <= len(positions) <= length and positions[0] == 0
    assert len(set(np.diff(positions).tolist())) <= 1
    if n_frames <= length:
        assert positions.tolist() == list(range(n_frames))


def test_other_lengths_use_a_regular_stride_over_the_cache():
    positions = derived_positions(20, 20, 7)
    assert positions.tolist() == [0, 3, 6, 9, 12, 15, 18]


def test_derive_sequences_masks_padding():
    features = np.arange(2 * 4 * 1, dtype=np.float32).reshape(2, 4, 1)
    stored = np.array([4, 1])
    out, mask = derive_sequences(features, stored, 2)
    assert out[:, :, 0].tolist() == [[0, 2], [4, 0]]  # stride 2 over 4 cached frames; 1 real frame + padding
    assert mask.tolist() == [[True, True], [True, False]]
    with pytest.raises(ValueError):
        derived_positions(4, 4, 5)
