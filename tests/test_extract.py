import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from videoclf.config import load_config
from videoclf.data.videos import split_videos
from videoclf.dataset import check_csvs, load_split
from videoclf.search.prepare import prepare
from videoclf.errors import CacheError, DataError
from videoclf.features.cache import open_cache
from videoclf.features.extract import extract_videos
from videoclf.features.backbones import resolve_weights

from conftest import cli_env, in_private_tmpfs, run_cli, write_csv, write_dataset, write_video


def _cache(config):
    return open_cache(config, resolve_weights(config.extractor))


def test_extract_caches_and_second_run_hits(tmp_path, make_config):
    write_dataset(tmp_path / "data")
    config = load_config(make_config())
    videos, _ = split_videos(config, "train")
    first = extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
    assert first.extracted == 6 and first.frames == 8 * 3 + 12 * 3 - 4 * 3  # 12-frame clips: 8; 30: 8
    again = extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
    assert again.extracted == 0 and again.frames == 0
    features, mask, n_frames = _cache(config).read([v.key for v in videos])
    assert features.shape == (6, 8, 1280) and features.dtype == np.float16
    assert sorted(set(n_frames.tolist())) == [12, 30] and mask.all()
    assert np.abs(features).sum() > 0


def test_key_changes_make_a_new_cache_and_changed_files_are_reextracted(tmp_path, make_config):
    rows = write_dataset(tmp_path / "data", n=2)
    config = load_config(make_config())
    videos, _ = split_videos(config, "train")
    extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
    other = load_config(make_config(), ["sampling.crop=center"])
    assert _cache(other).path != _cache(config).path
    assert extract_videos(other, videos, resolve_weights(other.extractor), progress=False).extracted == 2
    time.sleep(0.01)
    write_video(tmp_path / "data" / rows[0][0], 5, seed=99)  # the file changes on disk
    videos, _ = split_videos(config, "train")
    assert extract_videos(config, videos, resolve_weights(config.extractor), progress=False).extracted == 1
    _, mask, n_frames = _cache(config).read([videos[0].key])
    assert n_frames[0] == 5 and mask[0].sum() == 5


def test_bad_videos_are_reported_and_skipped(tmp_path, make_config, capsys):
    root = tmp_path / "data"
    rows = write_dataset(root, n=4)
    (root / "broken.avi").write_bytes(b"not a video")
    (root / "empty.avi").write_bytes(b"")
    write_csv(root / "train.csv", rows + [("broken.avi", "C0"), ("empty.avi", "C1"), ("gone.avi", "C0")])
    config = load_config(make_config(), ["cache.max_bad_fraction=0.5"])
    videos, _ = split_videos(config, "train")
    report = extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
    assert report.extracted == 4 and set(report.bad) == {"broken.avi", "empty.avi", "gone.avi"}
    lines = (report.cache_path / "bad_videos.csv").read_text().splitlines()
    assert lines[0] == "video,reason,path" and len(lines) == 4 and "0 bytes" in "\n".join(lines)
    assert f",{root / 'gone.avi'}" in "\n".join(lines)  # the file it looked for, folder and all
    strict = load_config(make_config(), ["cache.max_bad_fraction=0.1"])
    with pytest.raises(DataError, match="bad_videos.csv"):
        extract_videos(strict, videos, resolve_weights(strict.extractor), progress=False)
    # another split's run keeps this split's reasons (merged by video key), and a mended video leaves the list
    write_csv(root / "test.csv", [(rows[0][0], "C0"), ("corrupt.avi", "C1")])
    (root / "corrupt.avi").write_bytes(b"junk")
    test_videos, _ = split_videos(config, "test")
    extract_videos(config, test_videos, resolve_weights(config.extractor), progress=False)
    listed = (report.cache_path / "bad_videos.csv").read_text()
    assert all(name in listed for name in ("broken.avi", "empty.avi", "gone.avi", "corrupt.avi"))
    write_video(root / "broken.avi", 6, seed=7)
    extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
    listed = (report.cache_path / "bad_videos.csv").read_text()
    assert "broken.avi" not in listed and "corrupt.avi" in listed and "gone.avi" in listed
    extract_videos(config, split_videos(config, "train")[0], resolve_weights(config.extractor), progress=False)
    capsys.readouterr()
    load_split(config, "train", resolve_weights(config.extractor))  # missing and undecodable, counted apart
    assert "train: leaving out 1 missing video and 1 undecodable video: empty.avi, gone.avi (reasons in" in \
        capsys.readouterr().out


def test_missing_or_undecodable_videos_stop_the_job_by_default_all_named(tmp_path, make_config):
    """By default a CSV row whose file is missing stops the job before any work, every such file named with the
    fix; an undecodable one stops it once extraction finds it, named with its reason."""
    root = tmp_path / "data"
    rows = write_dataset(root, n=4)
    write_csv(root / "train.csv", rows + [("gone.avi", "C0"), ("lost.avi", "C1")])
    config = load_config(make_config())
    with pytest.raises(DataError) as refused:
        check_csvs(config)
    message = str(refused.value)
    assert "train.csv lists 2 videos that cannot be found:" in message
    assert str(root / "gone.avi") in message and str(root / "lost.avi") in message
    assert "cache.max_bad_fraction=0.34 to leave them out" in message  # 2 of 6
    refused = run_cli(["extract", "--config", str(make_config())], tmp_path)
    assert refused.returncode == 2 and "lost.avi" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "cache").exists()  # stopped before any work
    check_csvs(load_config(make_config(), ["cache.max_bad_fraction=0.34"]))  # allowed: left out later, named
    (root / "broken.avi").write_bytes(b"not a video")
    write_csv(root / "train.csv", rows + [("broken.avi", "C0")])
    check_csvs(config)  # every listed file is there
    with pytest.raises(DataError) as refused:
        extract_videos(config, split_videos(config, "train")[0], resolve_weights(config.extractor), progress=False)
    assert "broken.avi (" in str(refused.value) and "cache.max_bad_fraction=0.2 to leave" in str(refused.value)


def test_no_usable_video_fails(tmp_path, make_config):
    root = tmp_path / "data"
    (root).mkdir()
    (root / "a.avi").write_bytes(b"")
    write_csv(root / "train.csv", [("a.avi", "X")])
    config = load_config(make_config(), ["cache.max_bad_fraction=1.0"])
    with pytest.raises(DataError, match="could not be decoded"):
        extract_videos(config, split_videos(config, "train")[0], resolve_weights(config.extractor), progress=False)


def test_corrupt_and_foreign_cache_files_are_detected(tmp_path, make_config):
    write_dataset(tmp_path / "data", n=2)
    config = load_config(make_config())
    videos, _ = split_videos(config, "train")
    report = extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
    cache_file = report.cache_path / "features.h5"
    with h5py.File(cache_file, "a") as handle:
        handle.attrs["key"] = '{"extractor": "other"}'
    with pytest.raises(CacheError, match="another configuration"):
        _cache(config).index()
    cache_file.write_bytes(b"\x89HDF garbage")
    with pytest.raises(CacheError, match="--rebuild"):
        _cache(config).index()
    result = run_cli(["extract", "--config", str(make_config()), "--rebuild"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _cache(config).read([v.key for v in videos])[0].shape[0] == 2


def _slow_config(tmp_path, make_config, n):
    rows = write_dataset(tmp_path / "data", n=n, frames=(40,))
    write_csv(tmp_path / "data" / "test.csv", rows[:1])
    # batch 4 and InceptionV3 make each video take several model calls
    return make_config({"extractor.name": "inception_v3", "extractor.weights": "none", "extractor.batch_size": 4,
                        "sampling.image_size": 96})


def test_kill_9_mid_extraction_then_resume(tmp_path, make_config):
    path = _slow_config(tmp_path, make_config, n=24)
    marker = tmp_path / "two-parts-committed"
    # The extractor pauses once it has committed two parts (an event, not a race with a fast machine), and is
    # killed there with the rest of its work in flight.
    script = f"""
import sys, time
from videoclf.features import cache
commit, done = cache.FeatureCache.commit, []
def commit_then_pause(self, entries):
    commit(self, entries)
    done.append(len(entries))
    if len(done) == 2:
        open({str(marker)!r}, "w").close()
        time.sleep(600)
cache.FeatureCache.commit = commit_then_pause
from videoclf.cli import main
sys.exit(main(["extract", "--config", {str(path)!r}]))
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    config = load_config(path)
    parts = _cache(config).parts
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the extractor never committed two parts"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(_cache(config).index())  # readable after the kill
    assert 2 <= committed < 24
    videos, _ = split_videos(config, "train")
    report = extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
    assert report.extracted == 24 - committed
    assert len(_cache(config).index()) == 24
    assert not list(parts.glob("*")) and not list(report.cache_path.glob(".*.tmp"))


def test_two_concurrent_extracts_do_the_work_once(tmp_path, make_config):
    path = _slow_config(tmp_path, make_config, n=6)
    env = cli_env()
    cmd = [sys.executable, "-m", "videoclf", "extract", "--config", str(path)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    extracted = [int(line.split("(")[1].split()[0]) for out, _ in outputs for line in out.splitlines()
                 if line.startswith("train:")]
    assert sorted(extracted) == [0, 6]
    assert len(_cache(load_config(path)).index()) == 6  # test.csv reuses a train video


def test_split_arrays_api_gives_features_mask_labels_at_any_length(tmp_path, make_config):
    from videoclf.dataset import split_arrays

    write_dataset(tmp_path / "data", n=4, frames=(5, 30))
    config = load_config(make_config())
    features, mask, labels, vocabulary = split_arrays(config, "train", 4)
    assert features.shape == (4, 4, 1280) and features.dtype == np.float32
    # 5-frame clips keep their rhythm: every 2nd frame (3 of them), never an uneven pick of 4
    assert mask.shape == (4, 4) and mask.sum(axis=1).tolist() == [3, 4, 3, 4]
    assert vocabulary.classes == ("C0", "C1") and labels.tolist() == [0, 1, 0, 1]
    full, full_mask, _, _ = split_arrays(config, "train")
    assert full.shape[1] == 8 and full_mask.sum(axis=1).tolist() == [5, 8, 5, 8]  # 5-frame clips are padded


def test_shards_extract_side_by_side_and_readers_see_the_union(tmp_path, make_config):
    write_dataset(tmp_path / "data", n=8, frames=(12,))
    path = make_config()
    env = cli_env()
    cmd = [sys.executable, "-m", "videoclf", "extract", "--config", str(path)]
    procs = [subprocess.Popen(cmd + ["--shard", f"{i}/2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    config = load_config(path)
    cache = _cache(config)
    assert sorted(f.name for f in cache.files()) == ["features.shard-0-of-2.h5", "features.shard-1-of-2.h5"]
    per_shard = []
    for file in cache.files():
        with h5py.File(file, "r") as handle:
            per_shard.append(set(handle["video"].asstr()[:]))
    assert not per_shard[0] & per_shard[1] and all(per_shard)  # disjoint, nothing copied
    videos, _ = split_videos(config, "train")
    assert _cache(config).read([v.key for v in videos])[0].shape == (8, 8, 1280)  # the union
    again = run_cli(["extract", "--config", str(path), "--shard", "0/2"], cwd=tmp_path)
    assert again.returncode == 0 and "(0 extracted now" in again.stdout
    assert extract_videos(config, videos, resolve_weights(config.extractor), progress=False).extracted == 0  # unsharded reader: all present


def test_bad_shard_argument(tmp_path, make_config):
    result = run_cli(["extract", "--config", str(make_config()), "--shard", "2/2"], cwd=tmp_path)
    assert result.returncode == 2 and "0 <= I < N" in result.stderr


def test_damaged_cached_features_are_never_trained_on_but_extracted_again(tmp_path, make_config, capsys):
    write_dataset(tmp_path / "data")
    config = load_config(make_config())
    videos, _ = split_videos(config, "train")
    report = extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
    keys = [v.key for v in videos]
    clean, _, _ = _cache(config).read(keys)
    consolidated = report.cache_path / "features.h5"
    with h5py.File(consolidated, "r") as handle:
        named = {name: row for row, name in enumerate(handle["video"].asstr()[:])}
        rows = {key: named[_cache(config).identity(key)] for key in keys}  # rows are named by resolved path
        chunk = handle["features"].id.get_chunk_info(rows[keys[1]])  # video 1's own checksummed block
    with open(consolidated, "r+b") as fh:  # random bytes into the middle of that block
        fh.seek(chunk.byte_offset + chunk.size // 2)
        fh.write(np.random.default_rng(0).bytes(64))
    with h5py.File(consolidated, "r+") as handle:  # and NaN into video 3, written through HDF5 (valid checksum)
        block = handle["features"][rows[keys[3]]]
        block[0, 0] = np.nan
        handle["features"][rows[keys[3]]] = block
    with pytest.raises(CacheError, match="videoclf extract"):
        _cache(config).read(keys)  # never silently handed to training
    again = extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
    assert again.extracted == 2  # exactly the two damaged videos
    assert "2 cached videos damaged" in capsys.readouterr().out
    repaired, _, _ = _cache(config).read(keys)
    assert np.isfinite(repaired).all()
    np.testing.assert_allclose(repaired.astype(np.float32), clean.astype(np.float32), atol=1e-2)


def _file_size_limit(n_bytes):
    """Runs in the child: files may not grow past ``n_bytes`` (writes then fail with EFBIG, as on a full quota)."""
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, resource.RLIM_INFINITY))

    return apply


def test_a_failing_cache_write_is_one_clear_error_and_the_rerun_resumes(tmp_path, make_config):
    # Each video's part file (~33 KB) fits under the limit; merging the six parts (~135 KB) does not.
    write_dataset(tmp_path / "data")
    path = make_config()
    failed = run_cli(["extract", "--config", str(path)], cwd=tmp_path, preexec_fn=_file_size_limit(60_000))
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "Cannot write to the feature cache folder" in failed.stderr and "File too large" in failed.stderr
    assert "Extracted and kept: 6 videos" in failed.stderr and "set cache.dir" in failed.stderr
    assert "Traceback" not in failed.stderr and "Exception ignored" not in failed.stderr
    cache = _cache(load_config(path))
    assert not list(cache.path.rglob("*.tmp"))  # the partial file is gone
    resumed = run_cli(["extract", "--config", str(path)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "6/6 videos cached (0 extracted now)" in resumed.stdout  # nothing was lost or extracted twice
    assert (cache.path / "features.h5").is_file() and not list(cache.parts.glob("*.h5"))


def test_a_tmpfs_cache_filling_up_or_read_only(tmp_path, make_config):
    """A real small file system (a tmpfs in a private mount namespace; skipped where that is not permitted)."""
    write_dataset(tmp_path / "data")
    path = make_config()
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    env = cli_env()
    extract = f"{sys.executable} -m videoclf extract --config {path}"
    script = f"""
    mount -t tmpfs -o size=64k tmpfs {cache_dir} || exit 77
    {extract}; echo "rc=$?"
    echo ==== ; mount -o remount,size=280k {cache_dir}; {extract}; echo "rc=$?"
    echo ==== ; mount -o remount,size=4m {cache_dir}; {extract}; echo "rc=$?"
    echo ==== ; mount -t tmpfs -o ro,size=4m tmpfs {cache_dir}; {extract}; echo "rc=$?"
    """
    result = in_private_tmpfs(script, tmp_path, env, timeout=600)
    runs = [run.strip() for run in (result.stdout + result.stderr).split("====")]
    stdout_runs = result.stdout.split("====")
    assert len(stdout_runs) == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr[-3000:]
    assert [run.strip().splitlines()[-1] for run in stdout_runs] == ["rc=2", "rc=2", "rc=0", "rc=2"], runs
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, result.stderr
    assert "Not enough space for the feature cache" in errors[0]  # refused before any work
    assert "No space left on device" in errors[1] and "Extracted and kept" in errors[1]  # filled mid-way
    assert "Read-only file system" in errors[2] and str(cache_dir) in errors[2]
    assert "videos cached" in stdout_runs[2]


def test_csv_rows_may_be_absolute_or_outside_the_data_root_with_stable_keys(tmp_path, make_config):
    rows = write_dataset(tmp_path / "data", n=4)
    outside = write_video(tmp_path / "elsewhere" / "v_C0_g09_c01.avi", 12, seed=9)
    listed = [(str(tmp_path / "data" / rows[0][0]), rows[0][1]),  # absolute, inside the root
              (f"./{rows[1][0]}", rows[1][1]), (rows[2][0], rows[2][1]), (rows[3][0], rows[3][1]),
              ("../elsewhere/v_C0_g09_c01.avi", "C0"), (str(outside), "C0")]
    write_csv(tmp_path / "data" / "train.csv", listed[:5])
    config = load_config(make_config())
    videos, _ = split_videos(config, "train")
    assert [v.key for v in videos] == [r[0] for r in rows] + [outside.as_posix()]
    assert extract_videos(config, videos, resolve_weights(config.extractor), progress=False).extracted == 5
    write_csv(tmp_path / "data" / "train.csv", [(r[0], r[1]) for r in rows] + listed[5:])  # spelled differently
    again, _ = split_videos(config, "train")
    assert [v.key for v in again] == [v.key for v in videos]
    assert extract_videos(config, again, resolve_weights(config.extractor), progress=False).extracted == 0  # same keys: nothing extracted twice


def test_load_split_only_reads_the_cache(tmp_path, make_config):
    from filelock import FileLock

    from videoclf.dataset import load_split

    rows = write_dataset(tmp_path / "data", n=4)
    config = load_config(make_config())
    weights = resolve_weights(config.extractor)
    extract_videos(config, split_videos(config, "train")[0], weights, progress=False)
    with FileLock(str(_cache(config).path / ".lock")):  # an extractor holds the cache: a reader does not wait
        data, vocabulary = load_split(config, "train", weights)
    assert len(data) == 4 and vocabulary.classes == ("C0", "C1")
    write_video(tmp_path / "data" / "v_C0_g07_c01.avi", 12, seed=7)
    write_csv(tmp_path / "data" / "train.csv", rows + [("v_C0_g07_c01.avi", "C0")])
    with pytest.raises(CacheError, match="not in the feature cache.*Run videoclf extract"):
        load_split(config, "train", weights)  # never extracts on its own


def test_extraction_and_the_registered_model_share_one_frame_feature_path(tmp_path, make_config):
    """Clips packed across batch boundaries (batch 8, clips of 8, 5 and 3 frames) get the features of their
    own frames, exactly as one clip at a time would."""
    from videoclf.features.encode import encode_clips
    from videoclf.features.runtime import build_frame_model

    config = load_config(make_config())
    model = build_frame_model(config.extractor, config.sampling, resolve_weights(config.extractor))
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8) for n in (8, 5, 3)]
    together, counts = encode_clips(model, clips, 8)
    assert counts.tolist() == [8, 5, 3] and together.shape == (3, 8, 1280)
    for row, clip in enumerate(clips):
        alone, _ = encode_clips(model, [clip], 8)
        np.testing.assert_allclose(together[row], alone[0], atol=1e-5)
        assert not together[row, len(clip):].any()  # padding stays zero


def test_decoding_ahead_of_a_gpu_model_and_in_turns_with_a_cpu_model_give_the_same_features(
        tmp_path, make_config, monkeypatch):
    """On CPUs decoding and the model take turns; beside a GPU (here pretended: TensorFlow on the CPU)
    decoding runs ahead. Either way every video gets its own frames' features."""
    write_dataset(tmp_path / "data", n=10, frames=(12, 30, 7))
    turns = load_config(make_config(), [f"cache.dir={tmp_path / 'turns'}"])
    ahead = load_config(make_config(), [f"cache.dir={tmp_path / 'ahead'}"])
    videos, _ = split_videos(turns, "train")
    assert extract_videos(turns, videos, resolve_weights(turns.extractor), progress=False).extracted == 10
    monkeypatch.setenv("VIDEOCLF_ASSUME_GPU", "1")
    assert extract_videos(ahead, videos, resolve_weights(ahead.extractor), progress=False).extracted == 10
    keys = [v.key for v in videos]
    (a, mask_a, n_a), (b, mask_b, n_b) = _cache(turns).read(keys), _cache(ahead).read(keys)
    np.testing.assert_array_equal(mask_a, mask_b)
    np.testing.assert_array_equal(n_a, n_b)
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3 * np.abs(a).max())


def _overwrite_dataset_bytes(file, name, make_bytes):
    """Overwrites a contiguous dataset's stored bytes in place, below HDF5 (as a bad disk or a stray write would)."""
    with h5py.File(file, "r") as handle:
        dataset = handle[name]
        offset, n_bytes = dataset.id.get_offset(), dataset.id.get_storage_size()
    with open(file, "r+b") as fh:
        fh.seek(offset)
        fh.write(make_bytes(n_bytes))


def _both_streams_damaged(tmp_path, make_config, dataset: str, damage):
    """A motion-enabled cache of six videos, extracted, then ``damage(n_bytes)`` written over ``dataset`` in both
    streams' files: ``(config, videos, weights, report, clean rows as read before)``."""
    write_dataset(tmp_path / "data")
    config = load_config(make_config({"motion.enabled": True}))
    videos, _ = split_videos(config, "train")
    weights = resolve_weights(config.extractor)
    report = extract_videos(config, videos, weights, progress=False)
    clean = _cache(config).read([v.key for v in videos])
    motion_file = next((tmp_path / "cache").glob("motion-*/features.h5"))
    for file in (report.cache_path / "features.h5", motion_file):
        _overwrite_dataset_bytes(file, dataset, damage)
    return config, videos, weights, report, clean


@pytest.mark.parametrize("dataset,damage", [
    ("mask", lambda n: bytes(n)),  # all padding: every clip would look empty
    ("mask", lambda n: np.random.default_rng(1).integers(0, 2, n, np.uint8).tobytes()),  # frames silently dropped
    ("n_frames", lambda n: np.random.default_rng(2).bytes(n)),  # absurd clip lengths
])
def test_damaged_cache_metadata_is_found_named_and_extracted_again(tmp_path, make_config, capsys, dataset, damage):
    config, videos, weights, report, clean = _both_streams_damaged(tmp_path, make_config, dataset, damage)
    keys = [v.key for v in videos]
    capsys.readouterr()
    with pytest.raises(CacheError, match=r"damaged video.*extract"):
        _cache(config).read(keys)  # never handed to training
    with pytest.raises(CacheError, match="damaged"):
        load_split(config, "train", weights)
    if dataset == "n_frames":  # `extract` reads and checks every row
        again = extract_videos(config, videos, weights, progress=False)
        assert again.extracted == again.motion_extracted == len(videos)  # every row was hit, in both streams
    else:  # `tune` checks the rows while it loads them (reading them once), then extracts the damaged ones
        prepare(config, weights, progress=False)
    out = capsys.readouterr().out
    assert f"{len(videos)} cached videos damaged ({keys[0]}: " in out and "extracting again" in out
    # extract: once per stream; tune: once (the damaged videos are extracted again in both streams)
    assert out.count("cached videos damaged") == (2 if dataset == "n_frames" else 1)
    for repaired, original in zip(_cache(config).read(keys), clean):
        np.testing.assert_array_equal(repaired, original)
    data, _ = load_split(config, "train", weights)
    assert (data.n_frames == clean[2]).all() and data.motion_valid.any()


def test_cache_files_of_schema_1_without_digests_are_still_read_and_checked(tmp_path, make_config):
    write_dataset(tmp_path / "data")
    config = load_config(make_config())
    videos, _ = split_videos(config, "train")
    weights = resolve_weights(config.extractor)
    report = extract_videos(config, videos, weights, progress=False)
    file, keys = report.cache_path / "features.h5", [v.key for v in videos]
    with h5py.File(file, "r+") as handle:  # as the previous version wrote it
        del handle["digest"]
        handle.attrs["schema_version"] = 1
    features, mask, n_frames = _cache(config).read(keys)
    assert mask.any() and (n_frames > 0).all()
    with h5py.File(file, "r+") as handle:
        handle["mask"][...] = False  # the invariants still catch what the missing digest would have
    assert extract_videos(config, videos, weights, progress=False).extracted == len(videos)
    with h5py.File(file, "r") as handle:
        assert "digest" in handle  # the merge wrote the current schema


@pytest.mark.parametrize("names,column,grouping", [
    ("v_C{c}_g{g:02d}_c{i:02d}.avi", False, "UCF101 gNN in the video names"),
    ("clip_{c}_{g}_{i}.avi", True, "the CSV's group column"),
    ("clip_{c}_{g}_{i}.avi", False, "none (every video is its own group)"),
])
def test_groups_come_from_a_csv_column_or_ucf101_names_and_their_absence_is_said(tmp_path, make_config, capsys,
                                                                              names, column, grouping):
    root = tmp_path / "data"
    rows = []
    for i in range(8):
        name = names.format(c=i % 2, g=i // 4, i=i)
        write_video(root / name, 6, seed=i)
        rows.append((name, f"C{i % 2}") + ((f"source{i // 4}",) if column else ()))
    header = "video_name,tag,group\n" if column else "video_name,tag\n"
    for split in ("train", "test"):
        (root / f"{split}.csv").write_text(header + "".join(",".join(r) + "\n" for r in rows))
    config = load_config(make_config({"training.cv_folds": 2}))
    data = prepare(config, resolve_weights(config.extractor), progress=False)
    assert data.train.grouping == grouping
    if grouping.startswith("none"):
        assert "not grouped" in capsys.readouterr().out and len(set(data.train.groups)) == 8
    else:
        assert len(set(data.train.groups)) == 2  # two sources, never split across a fold
        for fold in data.folds:
            assert not set(fold.train.groups) & set(fold.validation.groups)



def test_tune_repairs_damaged_rows_of_both_splits(tmp_path, make_config, capsys):
    """Damage in a training row and in a test row: preparing the search re-extracts both (repairing the training
    row merges the cache file, which leaves the damaged test row out: it is extracted again too)."""
    rows = write_dataset(tmp_path / "data", n=6)
    test_rows = [(f"v_C{i % 2}_g{90 + i}_c01.avi", f"C{i % 2}") for i in range(2)]
    for i, (name, _) in enumerate(test_rows):
        write_video(tmp_path / "data" / name, 14, seed=50 + i)
    write_csv(tmp_path / "data" / "test.csv", test_rows)
    config = load_config(make_config())
    weights = resolve_weights(config.extractor)
    for split in ("train", "test"):
        extract_videos(config, split_videos(config, split)[0], weights, progress=False)
    consolidated = _cache(config).path / "features.h5"
    with h5py.File(consolidated, "r+") as handle:  # NaN into one training and one test row, through HDF5
        index = {name: row for row, name in enumerate(handle["video"].asstr()[:])}
        for key in map(_cache(config).identity, (rows[3][0], test_rows[1][0])):
            block = handle["features"][index[key]]
            block[0, 0] = np.nan
            handle["features"][index[key]] = block
    data = prepare(config, weights, progress=False)
    out = capsys.readouterr().out
    assert "1 cached video damaged" in out and "1 video of the test split no longer cached" in out
    assert len(data.train) == 6 and len(data.test) == 2
    assert np.isfinite(data.train.features).all() and np.isfinite(data.test.features).all()


@pytest.mark.parametrize("dataset", ["video", "size"])
def test_damaged_video_names_set_the_file_aside_and_its_videos_are_extracted_again(tmp_path, make_config, capsys,
                                                                                   dataset):
    """Random bytes in a cache file's names (or stamps), appearance and motion: readers name the file and the fix;
    extract and tune set it aside and extract its videos again; the next run finds the cache whole."""
    config, videos, weights, report, clean = _both_streams_damaged(
        tmp_path, make_config, dataset, lambda n: np.random.default_rng(5).bytes(n))
    keys = [v.key for v in videos]
    if dataset == "video":  # a stamp's damage reads as a changed file (its digest then fails): no error to name
        with pytest.raises(CacheError, match=r"features.h5 is damaged .*videoclf extract"):
            load_split(config, "train", weights)
    capsys.readouterr()
    prepare(config, weights, progress=False)  # tune's first step
    out = capsys.readouterr().out
    if dataset == "video":
        assert out.count("set aside as features.h5.damaged-") == 2  # appearance and motion
        assert len(list(report.cache_path.glob("features.h5.damaged-*"))) == 1
    again = extract_videos(config, videos, weights, progress=False)
    assert again.extracted == again.motion_extracted == 0  # whole again
    for repaired, original in zip(_cache(config).read(keys), clean):
        np.testing.assert_allclose(np.asarray(repaired, np.float32), np.asarray(original, np.float32), atol=1e-2)


def test_ffmpeg_s_own_lines_stay_out_of_the_console(tmp_path, make_config):
    """A video whose JPEG frames are damaged makes FFmpeg complain from inside OpenCV; the console shows videoclf's
    words only, and the video's reason is in bad_videos.csv."""
    root = tmp_path / "data"
    rows = write_dataset(root, n=4)
    damaged = write_video(root / "v_C0_g09_c01.avi", 30, seed=9)
    data = bytearray(damaged.read_bytes())
    noise = np.random.default_rng(0)
    for offset in range(len(data) // 3, 2 * len(data) // 3, 997):
        data[offset: offset + 16] = noise.bytes(16)
    damaged.write_bytes(bytes(data))
    write_csv(root / "train.csv", rows + [(damaged.name, "C0")])
    path = make_config({"cache.max_bad_fraction": 0.5})
    result = run_cli(["extract", "--config", str(path)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert " @ 0x" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert damaged.name in next((tmp_path / "cache").glob("*/bad_videos.csv")).read_text()


def test_two_data_folders_with_the_same_file_names_keep_their_own_rows(tmp_path, make_config, capsys):
    """camA/ and camB/ hold different videos under the same names, of equal sizes and times: each folder's run
    extracts its own once, never calls the other's rows changed, reads its own features; a video undecodable in one
    folder is not left out of the other (bad_videos.csv names each file)."""
    names = ["clip0.avi", "clip1.avi", "clip2.avi"]
    for cam, seed in (("camA", 0), ("camB", 50)):
        for i, name in enumerate(names[:2]):
            write_video(tmp_path / cam / name, 12, seed=seed + i)
        write_csv(tmp_path / cam / "train.csv", [(name, f"C{i % 2}") for i, name in enumerate(names)])
        write_csv(tmp_path / cam / "test.csv", [(names[0], "C0")])
    (tmp_path / "camA" / "clip2.avi").write_bytes(b"junk")  # undecodable in camA only
    write_video(tmp_path / "camB" / "clip2.avi", 12, seed=52)
    for name in names[:2]:  # same size (trailing bytes FFmpeg ignores) and same mtime in both folders
        a, b = tmp_path / "camA" / name, tmp_path / "camB" / name
        size = max(a.stat().st_size, b.stat().st_size)
        for path in (a, b):
            with path.open("ab") as fh:
                fh.write(b"\0" * (size - path.stat().st_size))
            os.utime(path, ns=(a.stat().st_mtime_ns, a.stat().st_mtime_ns))
    configs = {cam: load_config(make_config({"data.root": str(tmp_path / cam), "cache.max_bad_fraction": 0.5},
                                            name=f"{cam}.yaml")) for cam in ("camA", "camB")}
    weights = resolve_weights(configs["camA"].extractor)
    assert _cache(configs["camA"]).path == _cache(configs["camB"]).path  # one cache, two folders' rows
    extracted = {cam: extract_videos(config, split_videos(config, "train")[0], weights, progress=False).extracted
                 for cam, config in configs.items()}
    assert extracted == {"camA": 2, "camB": 3}
    again = [extract_videos(config, split_videos(config, "train")[0], weights, progress=False).extracted
             for config in configs.values()]
    assert again == [0, 0] and "changed on disk" not in capsys.readouterr().out
    features = {cam: _cache(config).read(names[:2])[0] for cam, config in configs.items()}
    assert not np.array_equal(features["camA"], features["camB"])
    assert "clip2.avi" in _cache(configs["camA"]).bad_videos()
    assert "clip2.avi" not in _cache(configs["camB"]).bad_videos()
    import csv

    with _cache(configs["camA"]).report.open() as fh:
        assert [(r["video"], r["path"]) for r in csv.DictReader(fh)] == [
            ("clip2.avi", f"{os.path.realpath(tmp_path / 'camA')}/clip2.avi")]


def test_cache_rows_named_relative_to_a_folder_are_adopted_and_written_again_with_it(tmp_path, make_config,
                                                                                     monkeypatch):
    """A cache written before rows named their folder (schema 2: names relative to the data folder) is read as the
    current folder's, not extracted again, and the next extract writes it with the folder's path."""
    from videoclf.features import cache as cache_module

    write_dataset(tmp_path / "data", n=2)
    config = load_config(make_config())
    videos, _ = split_videos(config, "train")
    weights = resolve_weights(config.extractor)
    extract_videos(config, videos, weights, progress=False)
    cache = _cache(config)
    features, mask, n_frames = cache.read([v.key for v in videos])
    legacy = cache_module.FeatureCache(config.cache.dir, cache.key, cache.dim, config.cache.dtype)  # no folder
    monkeypatch.setattr(cache_module, "SCHEMA_VERSION", 2)
    legacy._write_file(cache.consolidated, [cache_module.Entry(v, features[i], int(n_frames[i]), mask[i])
                                            for i, v in enumerate(videos)])
    monkeypatch.undo()
    with h5py.File(cache.consolidated, "r") as handle:
        assert sorted(n.decode() for n in handle["video"][:]) == sorted(v.key for v in videos)
    assert extract_videos(config, videos, weights, progress=False).extracted == 0
    with h5py.File(cache.consolidated, "r") as handle:
        assert handle.attrs["schema_version"] == 3
        assert sorted(n.decode() for n in handle["video"][:]) == sorted(
            f"{os.path.realpath(tmp_path / 'data')}/{v.key}" for v in videos)
    assert np.array_equal(_cache(config).read([v.key for v in videos])[0], features)
