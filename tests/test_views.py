"""Cached views of each video (sampling.views): their recipes, decoding, caches, and what training reads."""

import cv2
import numpy as np
import pytest

from videoclf.config import load_config
from videoclf.data.videos import split_videos
from videoclf.dataset import load_split, make_folds
from videoclf.errors import ConfigError
from videoclf.features.backbones import resolve_weights
from videoclf.features.cache import open_cache, open_motion_cache
from videoclf.features.decode import decode_sampled
from videoclf.features.extract import extract_videos
from videoclf.features.motion import FlowDescriber
from videoclf.features.sample import uniform_indices
from videoclf.features.views import MAX_VIEWS, PLAIN, ZOOM, view, views
from videoclf.search.identity import search_id_for

from conftest import write_dataset


def _panning_video(path, n_frames=40, size=(96, 64), step=2):
    """A textured picture moving ``step`` pixels right every frame, its left half darker than its right (so a
    mirror image differs from it)."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0] * 3, 3), dtype=np.uint8), (5, 5), 0)
    texture[:, : texture.shape[1] // 2] //= 3
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    for t in range(n_frames):
        start = size[0] - t * step
        writer.write(np.ascontiguousarray(texture[:, start: start + size[0]]))
    writer.release()
    return path


def test_the_recipes_are_fixed_and_only_the_plain_view_keeps_the_key_it_had():
    assert PLAIN.plain and PLAIN.key() == {} and len(views(MAX_VIEWS)) == MAX_VIEWS
    recipes = [(v.drawn, v.mirrored, v.closer) for v in views(MAX_VIEWS)]
    assert len(set(recipes)) == MAX_VIEWS  # every view differs from every other
    assert recipes[1:4] == [(False, True, False), (True, False, False), (False, False, True)]
    assert len({str(v.key()) for v in views(MAX_VIEWS)}) == MAX_VIEWS
    with pytest.raises(ValueError, match="view index"):
        view(MAX_VIEWS)


def test_drawn_positions_fall_one_in_each_segment_and_repeat_for_the_same_clip_length():
    drawn = view(2)
    for n_frames, length in ((100, 8), (21, 20), (1000, 16)):
        picks = drawn.indices(n_frames, length)
        starts = uniform_indices(n_frames, length)
        ends = np.append(starts[1:], n_frames)
        assert ((picks >= starts) & (picks < ends)).all()
        np.testing.assert_array_equal(picks, drawn.indices(n_frames, length))  # training = prediction
    assert not np.array_equal(drawn.indices(1000, 16), uniform_indices(1000, 16))
    np.testing.assert_array_equal(drawn.indices(5, 8), np.arange(5))  # a short clip keeps every frame


def test_a_mirrored_view_mirrors_the_frames_and_the_motion_a_closer_one_frames_closer(tmp_path):
    video = _panning_video(tmp_path / "pan.avi")
    describer = FlowDescriber()
    plain = decode_sampled(video, 8, 64, motion=describer)
    mirrored = decode_sampled(video, 8, 64, motion=FlowDescriber(), view=view(1))
    closer = decode_sampled(video, 8, 64, view=view(3))
    # resizing commutes with a mirror up to rounding
    assert np.abs(mirrored.frames.astype(int) - plain.frames[:, :, ::-1].astype(int)).max() <= 2
    dx = 0  # GLOBAL_CHANNELS[0]: mean horizontal flow
    assert plain.motion[:, dx].mean() > 0.01 and mirrored.motion[:, dx].mean() < -0.01
    np.testing.assert_allclose(mirrored.motion[:, dx], -plain.motion[:, dx], rtol=0.2, atol=2e-3)
    # the closer view shows the central ZOOM of the picture, enlarged
    capture = cv2.VideoCapture(str(video))
    ok, first = capture.read()
    capture.release()
    height, width = first.shape[:2]
    keep_h, keep_w = round(height * ZOOM), round(width * ZOOM)
    centre = first[(height - keep_h) // 2: (height - keep_h) // 2 + keep_h,
                   (width - keep_w) // 2: (width - keep_w) // 2 + keep_w]
    expected = cv2.cvtColor(cv2.resize(centre, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(closer.frames[0], expected)
    assert np.abs(closer.frames[0].astype(int) - plain.frames[0].astype(int)).mean() > 5


def test_views_are_caches_of_their_own_and_training_reads_every_view_of_its_videos(tmp_path, make_config):
    write_dataset(tmp_path / "data", n=6)
    one = load_config(make_config({"motion.enabled": True}))
    two = load_config(make_config({"motion.enabled": True, "sampling.views": 2}))
    weights = resolve_weights(one.extractor)
    videos, _ = split_videos(one, "train")
    assert extract_videos(one, videos, weights, progress=False).extracted == 6
    # the plain view is the cache a config without views fills: a second view extracts only itself
    report = extract_videos(two, videos, weights, progress=False)
    assert report.extracted == 6 and report.views == 2 and report.motion_extracted == 6
    plain, mirrored = open_cache(two, weights, view=view(0)), open_cache(two, weights, view=view(1))
    assert plain.path == open_cache(one, weights).path and mirrored.path != plain.path
    assert mirrored.path.name.split("-")[-2] == "v1" and mirrored.key["view"]["mirrored"]
    assert open_motion_cache(two, view=view(1)).path != open_motion_cache(two).path
    assert search_id_for(one, "s") != search_id_for(two, "s")
    assert search_id_for(one, "s") == search_id_for(load_config(make_config({"motion.enabled": True,
                                                                              "sampling.views": 1})), "s")

    train, _ = load_split(two, "train", weights)
    assert len(train.views) == 1 and train.views[0].keys == train.keys
    assert not np.array_equal(train.views[0].features, train.features)
    x, y = train.training_inputs(8, "appearance+motion")
    assert len(x) == 12 and list(y) == list(train.labels) * 2
    np.testing.assert_array_equal(x[6:], train.views[0].inputs(8, "appearance+motion"))
    fold = make_folds(train, 2, 0.5, 0)[0]  # the views of one video travel with it
    assert fold.train.views[0].keys == fold.train.keys and len(fold.train.training_inputs(4)[0]) == 2 * len(
        fold.train)
    mean = train.view_mean(lambda v: v.features[:, 0, :3].astype(np.float64))
    np.testing.assert_allclose(mean, (train.features[:, 0, :3] + train.views[0].features[:, 0, :3]) / 2, rtol=1e-3)


def test_the_number_of_views_is_checked(make_config):
    with pytest.raises(ConfigError, match="sampling.views"):
        load_config(make_config({"sampling.views": MAX_VIEWS + 1}))
