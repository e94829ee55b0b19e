import numpy as np
import pytest

from videoclf.errors import VideoError
from videoclf.features.decode import decode_sampled

from conftest import write_video


def _bar_position(frame):
    red = (frame[..., 0] > 150) & (frame[..., 2] < 100)  # RGB: red bar
    return np.flatnonzero(red.any(axis=0)).mean()


@pytest.mark.parametrize("codec, ext", [("MJPG", "avi"), ("XVID", "avi"), ("mp4v", "mp4")])
def test_codecs_sample_uniformly_in_rgb(tmp_path, codec, ext):
    path = write_video(tmp_path / f"v.{ext}", 40, size=(96, 64), codec=codec)
    clip = decode_sampled(path, 8, 32)
    assert clip.n_frames == 40 and clip.frames.shape == (8, 32, 32, 3) and clip.frames.dtype == np.uint8
    positions = [_bar_position(f) for f in clip.frames]
    assert all(b > a for a, b in zip(positions, positions[1:]))  # time order kept, RGB channel order


@pytest.mark.parametrize("codec", ["MJPG", "XVID"])
def test_each_file_decodes_on_one_thread_with_the_same_frames(tmp_path, codec):
    """Frame-threaded decoding costs more CPU per frame (extract_speed.py); one thread gives the same pixels."""
    import cv2

    from videoclf.features.decode import _open, to_model_frame

    path = write_video(tmp_path / "v.avi", 24, size=(96, 64), codec=codec)
    capture = _open(path)
    assert capture.get(cv2.CAP_PROP_N_THREADS) == 1
    capture.release()
    default = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = default.read()
        if not ok:
            break
        frames.append(to_model_frame(frame, 32, "none"))  # OpenCV's default: FFmpeg's frame threads
    default.release()
    clip = decode_sampled(path, 8, 32)
    np.testing.assert_array_equal(clip.frames, np.stack(frames)[::3])


def test_short_and_single_frame_videos_keep_every_frame(tmp_path):
    assert decode_sampled(write_video(tmp_path / "one.avi", 1), 8, 32).frames.shape[0] == 1
    short = decode_sampled(write_video(tmp_path / "short.avi", 5), 8, 32)
    assert short.n_frames == 5 and short.frames.shape[0] == 5


def test_odd_frame_size_and_centre_crop(tmp_path):
    path = write_video(tmp_path / "odd.avi", 10, size=(97, 33))
    assert decode_sampled(path, 4, 40, crop="center").frames.shape == (4, 40, 40, 3)


def test_wrong_metadata_count_trusts_what_decodes(tmp_path):
    path = write_video(tmp_path / "v.avi", 60, size=(64, 48))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])  # header still says 60 frames
    clip = decode_sampled(truncated, 8, 32)
    assert 0 < clip.n_frames < 60 and clip.frames.shape[0] == 8


@pytest.mark.parametrize("kind, message", [("missing", "not found"), ("empty", "0 bytes"),
                                           ("garbage", "cannot open|no frame")])
def test_bad_files_raise_video_error_with_reason(tmp_path, kind, message):
    path = tmp_path / "bad.avi"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"RIFF" + bytes(range(256)) * 20)
    with pytest.raises(VideoError, match=message) as info:
        decode_sampled(path, 8, 32)
    assert str(path) in str(info.value)


def test_what_is_not_a_video_file_is_refused_without_being_opened(tmp_path):
    import os
    import re

    fifo = tmp_path / "pipe.avi"
    os.mkfifo(fifo)  # opening it would block until a writer comes: never
    (tmp_path / "folder.avi").mkdir()
    (tmp_path / "empty.avi").touch()
    cases = {fifo: "not a regular file", "/dev/zero": "not a regular file", tmp_path / "folder.avi": "is a folder",
             tmp_path / "empty.avi": "empty file", tmp_path / "missing.avi": "file not found",
             tmp_path / ("x" * 300 + ".avi"): "cannot be read (File name too long)",
             "/" + "/".join(["d" * 200] * 30) + "/v.avi": "cannot be read (File name too long)"}
    for path, reason in cases.items():
        with pytest.raises(VideoError, match=re.escape(reason)) as caught:
            decode_sampled(path, 8, 32)
        assert len(str(caught.value)) < 400  # a 6000-character path is shown by its two ends
