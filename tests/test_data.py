
import cv2
import numpy as np
import pytest

from videoclf.config import DemoConfig
from videoclf.data.demo import CLASSES, generate_demo
from videoclf.data.table import group_id, read_video_table
from videoclf.data.ucf101 import prepare_ucf101
from videoclf.errors import DataError

from conftest import write_csv, write_video


def _frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return np.stack(frames)
        frames.append(frame)


def test_default_demo_set_is_big_enough_and_deterministic(tmp_path):
    # (its generation time is measured in benchmarks, never asserted: CI machines differ 4x)
    first = generate_demo(tmp_path / "a", DemoConfig())
    second = generate_demo(tmp_path / "b", DemoConfig())
    train, test = read_video_table(first / "train.csv"), read_video_table(first / "test.csv")
    assert len(train) >= 150 and len(test) >= 75
    assert set(train.tag) == set(test.tag) == set(CLASSES) and len(CLASSES) >= 5
    for split in ("train.csv", "test.csv"):
        assert (first / split).read_bytes() == (second / split).read_bytes()
    for name in (train.video_name[0], test.video_name[-1:].item()):
        assert np.array_equal(_frames(first / name), _frames(second / name))
    lengths = [int(cv2.VideoCapture(str(first / n)).get(cv2.CAP_PROP_FRAME_COUNT)) for n in train.video_name]
    assert 30 <= min(lengths) and max(lengths) <= 150 and len(set(lengths)) > 20
    # groups: several clips each, and test groups disjoint from train groups
    train_groups = {(t, group_id(n)) for n, t in zip(train.video_name, train.tag)}
    test_groups = {(t, group_id(n)) for n, t in zip(test.video_name, test.tag)}
    assert not train_groups & test_groups and len(train) > len(train_groups)


def test_demo_is_not_rewritten_unless_parameters_change(tmp_path):
    config = DemoConfig(train_groups=2, test_groups=1, clips_per_group=1, max_frames=40)
    out = generate_demo(tmp_path, config)
    video = out / read_video_table(out / "train.csv").video_name[0]
    stamp = video.stat().st_mtime_ns
    generate_demo(tmp_path, config)
    assert video.stat().st_mtime_ns == stamp
    generate_demo(tmp_path, config.model_copy(update={"seed": 1}))
    assert video.stat().st_mtime_ns != stamp


def test_grow_and_shrink_hold_the_same_kind_of_frames_in_opposite_order(tmp_path):
    from videoclf.data.demo import _scene, render_clip

    scene = _scene(np.random.default_rng(0))
    grow = render_clip("Grow", scene, np.random.default_rng(5), 20)
    shrink = render_clip("Shrink", scene, np.random.default_rng(5), 20)
    assert np.array_equal(grow[0], shrink[-1]) and np.array_equal(grow[-1], shrink[0])


@pytest.mark.parametrize("content, message", [
    ("name,label\na.avi,X\n", "expected columns video_name,tag"),
    ("video_name,tag\na.avi,\n", "line 2: empty"),
    ("video_name,tag\na.avi,X\na.avi,Y\n", "more than once"),
    ("video_name,tag\n", "lists no videos"),
])
def test_bad_csvs_give_one_clear_error(tmp_path, content, message):
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_video_table(path)
    assert str(path) in str(info.value)


def test_missing_csv(tmp_path):
    with pytest.raises(DataError, match="CSV not found"):
        read_video_table(tmp_path / "nope.csv")


def test_group_id():
    assert group_id("CricketShot/v_CricketShot_g08_c01.avi") == "08"
    assert group_id("clip.avi") is None


def _fake_ucf(root):
    classes = ["CricketShot", "Punch", "YoYo"]
    train_lines, test_lines = [], []
    for label in classes:
        for group in (1, 2, 8, 9):
            name = f"{label}/v_{label}_g{group:02d}_c01.avi"
            write_video(root / name, 3, size=(32, 24))
            (test_lines if group < 8 else train_lines).append(name)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "trainlist01.txt").write_text("".join(f"{n} 1\n" for n in train_lines))
    (lists / "testlist01.txt").write_text("".join(f"{n}\n" for n in test_lines))


def test_ucf101_official_layout(tmp_path):
    root = tmp_path / "UCF-101"
    _fake_ucf(root)
    overrides = prepare_ucf101(root, classes=["CricketShot", "Punch"])
    train, test = read_video_table(root / "train.csv"), read_video_table(root / "test.csv")
    assert set(train.tag) == set(test.tag) == {"CricketShot", "Punch"}
    assert len(train) == len(test) == 4
    assert all(group_id(n) in ("08", "09") for n in train.video_name)
    assert overrides["data.root"] == str(root)


def test_ucf101_unknown_class_and_missing_video(tmp_path):
    root = tmp_path / "UCF-101"
    _fake_ucf(root)
    with pytest.raises(DataError, match="Cricketshot"):
        prepare_ucf101(root, classes=["Cricketshot"])
    (root / "Punch/v_Punch_g08_c01.avi").unlink()
    with pytest.raises(DataError, match="missing"):
        prepare_ucf101(root, classes=["Punch"])


def test_seed_prepared_layout_is_accepted(tmp_path):
    for split in ("train", "test"):
        write_video(tmp_path / split / "v_Punch_g01_c01.avi", 3)
        write_csv(tmp_path / f"{split}.csv", [("v_Punch_g01_c01.avi", "Punch")])
    assert prepare_ucf101(tmp_path)["data.train_videos"] == "train"


def test_photo_motion_set_is_deterministic_real_and_split_by_photo(tmp_path):
    from videoclf.config import PhotoMotionConfig
    from videoclf.data.photo_motion import CLASSES as MOTIONS, TEST_PHOTOS, TRAIN_PHOTOS, generate_photo_motion

    config = PhotoMotionConfig(clips_per_photo=1, min_frames=6, max_frames=30)
    first = generate_photo_motion(tmp_path / "a", config, progress=False)
    second = generate_photo_motion(tmp_path / "b", config, progress=False)
    train, test = read_video_table(first / "train.csv"), read_video_table(first / "test.csv")
    assert len(train) == len(TRAIN_PHOTOS) * len(MOTIONS) and len(test) == len(TEST_PHOTOS) * len(MOTIONS)
    assert set(train.tag) == set(test.tag) == set(MOTIONS)
    train_groups = {group_id(n) for n in train.video_name}
    test_groups = {group_id(n) for n in test.video_name}
    assert train_groups.isdisjoint(test_groups)  # test photos never seen in training
    for split in ("train.csv", "test.csv"):
        assert (first / split).read_bytes() == (second / split).read_bytes()
    name = test.video_name[0]
    assert np.array_equal(_frames(first / name), _frames(second / name))
    lengths = [len(_frames(first / n)) for n in train.video_name]
    assert min(lengths) < 20 < max(lengths)  # clips shorter and longer than the cached length
    # real photographs, not flat synthetic colour: plenty of distinct grey levels in a frame
    frame = _frames(first / name)[0]
    assert len(np.unique(frame)) > 100
    # a still camera barely changes the picture; a fast pan changes it a lot
    still = _frames(first / next(n for n in train.video_name if "_Still_" in n)).astype(float)
    pan = _frames(first / next(n for n in train.video_name if "_PanFast_" in n)).astype(float)
    assert np.abs(np.diff(pan, axis=0)).mean() > 2 * np.abs(np.diff(still, axis=0)).mean()
    assert generate_photo_motion(first, config, progress=False) == first  # current: not rewritten


def test_a_shifted_test_camera_changes_only_the_test_clips(tmp_path):
    """``test_camera: shifted`` films the test photos unlike training (larger frames, longer clips, faster pans);
    the training clips are byte for byte those of the unshifted set, and an unshifted set stays current."""
    from videoclf.config import PhotoMotionConfig
    from videoclf.data.photo_motion import SHIFTED, TRAINING, generate_photo_motion, is_current

    same = PhotoMotionConfig(clips_per_photo=1, min_frames=6, max_frames=20)
    shifted = same.model_copy(update={"test_camera": "shifted"})
    plain = generate_photo_motion(tmp_path / "same", same, progress=False)
    moved = generate_photo_motion(tmp_path / "shifted", shifted, progress=False)
    assert is_current(plain, same) and not is_current(plain, shifted)
    train, test = read_video_table(moved / "train.csv"), read_video_table(moved / "test.csv")
    for name in train.video_name:
        assert (plain / name).read_bytes() == (moved / name).read_bytes()
    sizes = {(f.shape[1], f.shape[0]) for f in (_frames(moved / n)[0] for n in test.video_name)}
    assert sizes <= set(SHIFTED.frame_sizes) and sizes.isdisjoint(TRAINING.frame_sizes)
    lengths = [len(_frames(moved / n)) for n in test.video_name]
    assert min(lengths) >= round(6 * SHIFTED.length_factor) and max(lengths) > 20
    assert SHIFTED.pan_slow[1] > TRAINING.pan_slow[1] and SHIFTED.zoom_ratio[1] > TRAINING.zoom_ratio[1]


def test_generators_never_overwrite_a_users_own_csvs(tmp_path, capsys):
    from videoclf.config import load_config
    from videoclf.data.ensure import ensure_data, for_own_data

    from conftest import REPO

    mine = tmp_path / "footage"
    write_video(mine / "v_Fast_g01_c01.avi", 6)
    write_csv(mine / "train.csv", [("v_Fast_g01_c01.avi", "Fast")])
    write_csv(mine / "test.csv", [("v_Fast_g01_c01.avi", "Fast")])
    before = (mine / "train.csv").read_bytes()
    for name in ("demo.yaml", "photo_motion.yaml"):  # e.g. videoclf tune --set data.root=/my/footage
        config = load_config(REPO / "experiments" / name, [f"data.root={mine}"])
        ensure_data(config)
        own, run_name = for_own_data(config)  # the user's data gets the user's names, never the demo's model
        assert run_name == "footage" and own.data.demo is None and own.data.photo_motion is None
        assert own.tracking.experiment_name == own.tracking.registered_model_name == "videoclf-footage"
        chosen, _ = for_own_data(load_config(REPO / "experiments" / name, [f"data.root={mine}",
                                                                          "tracking.registered_model_name=mine"]))
        assert chosen.tracking.registered_model_name == "mine"
        assert chosen.tracking.experiment_name == "videoclf-footage"
    assert (mine / "train.csv").read_bytes() == before and len(list(mine.glob("*.avi"))) == 1
    demo, run_name = for_own_data(load_config(REPO / "experiments" / "demo.yaml"))
    assert run_name is None and demo.tracking.registered_model_name == "videoclf"
    with pytest.raises(DataError, match="refusing to overwrite"):
        generate_demo(mine, DemoConfig(train_groups=2, test_groups=1, clips_per_group=1))
