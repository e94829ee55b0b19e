"""Feature-extraction speed, measured side by side in one run.

(a) the seed notebook's loop (../shared/bench/seed_extract.py: decode every
    frame, one predict per video), (b) the pure compiled InceptionV3 forward on
    random frames of our batch shape (the ceiling on this machine), (c)
    ``videoclf`` extraction cold and (d) warm (everything cached), all on a
    UCF101-shaped corpus (320x240 XVID) from ../shared/bench/make_speed_corpus.py.
    Also: peak RSS while extracting one 1920x1080 video of 5 minutes.

usage: python benchmarks/extract_speed.py [--videos 40] [--long-minutes 5] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from videoclf.config import load_config  # noqa: E402
from videoclf.features.extract import extract_videos, split_videos  # noqa: E402


def seed_loop(shared: Path, csv: Path, root: Path) -> float:
    out = subprocess.run([sys.executable, str(shared / "bench" / "seed_extract.py"), str(csv), str(root), "224", "20"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"frames_per_s=([\d.]+)", out).group(1))


def pure_forward(config, batches: int = 12) -> float:
    import numpy as np

    from videoclf.features.extractors import build_frame_model, resolve_weights

    model = build_frame_model(config.extractor, config.sampling, resolve_weights(config.extractor))
    size, batch = config.sampling.image_size, config.extractor.batch_size
    frames = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
    model(frames)  # trace once
    started = time.perf_counter()
    for _ in range(batches):
        model(frames)
    return batches * batch / (time.perf_counter() - started)


def write_long_video(path: Path, minutes: float) -> int:
    import cv2
    import numpy as np

    frames = int(minutes * 60 * 25)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"XVID"), 25, (1920, 1080))
    base = np.tile(np.linspace(0, 255, 1920, dtype=np.uint8)[None, :, None], (1080, 1, 3))
    for t in range(frames):
        writer.write(np.roll(base, 8 * t, axis=1))
    writer.release()
    return frames


LONG_CHILD = """
import resource, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from videoclf.config import load_config
from videoclf.features.cache import VideoRef
from videoclf.features.extract import extract_videos
config = load_config({config!r}, {overrides!r})
report = extract_videos(config, [VideoRef.from_path("long.avi", Path({video!r}))], progress=False)
assert report.extracted == 1, report
print("peak_rss_mib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--long-minutes", type=float, default=5.0)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="videoclf-bench-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, str(args.shared / "bench" / "make_speed_corpus.py"), str(tmp / "corpus"),
                        str(args.videos)], check=True, capture_output=True)
        csv, root = tmp / "corpus" / "speed.csv", tmp / "corpus" / "videos"
        overrides = [f"data.root={root}", "extractor.name=inception_v3", "extractor.weights=none",
                     f"cache.dir={tmp / 'cache'}", "sampling.max_seq_length=20", "sampling.image_size=224"]
        config = load_config(REPO / "experiments" / "demo.yaml", overrides)
        videos, _ = split_videos(config, "train", csv, root)

        from videoclf.features.decode import decode_sampled

        started = time.perf_counter()
        for video in videos:
            decode_sampled(video.path, 20, 224)
        decode_seconds = time.perf_counter() - started
        a = seed_loop(args.shared, csv, root)
        b = pure_forward(config)
        cold = extract_videos(config, videos, progress=False)
        c = cold.frames_per_second
        started = time.perf_counter()
        warm = extract_videos(config, videos, progress=False)
        d_seconds = time.perf_counter() - started
        assert warm.extracted == 0

        long_video = tmp / "long.avi"
        frames = write_long_video(long_video, args.long_minutes)
        child = LONG_CHILD.format(repo=str(REPO), config=str(REPO / "experiments" / "demo.yaml"),
                                  overrides=overrides[1:] + [f"cache.dir={tmp / 'cache-long'}"], video=str(long_video))
        out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout
        rss = float(re.search(r"peak_rss_mib ([\d.]+)", out).group(1))

    print(f"corpus: {args.videos} UCF101-shaped videos (320x240 XVID), InceptionV3 @224, 20 frames a video, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'':38s}{'frames/s':>10s}")
    print(f"{'(a) seed loop':38s}{a:10.1f}")
    print(f"{'(b) pure compiled forward (ceiling)':38s}{b:10.1f}")
    print(f"{'(c) videoclf extract, cold':38s}{c:10.1f}   (+{cold.model_build_seconds:.1f}s model build, "
          f"{cold.seconds:.1f}s wall)")
    print(f"{'(d) videoclf extract, warm':38s}{'':10s}   {d_seconds * 1000:.0f} ms wall")
    print(f"decode + sample alone (grab every frame, retrieve 20): {decode_seconds:.1f}s for the corpus, "
          f"{decode_seconds / cold.seconds:.0%} of (c)'s wall time: the CPU it takes from the model on 2 cores")
    print(f"ratios: c/b = {c / b:.2f} (target >= 0.9)   c/a = {c / a:.2f} (target >= 1.8)   "
          f"d/c time = {d_seconds / cold.seconds:.2%} (target <= 2%)")
    print(f"peak RSS extracting one 1920x1080 video of {frames} frames ({args.long_minutes:g} min): {rss:.0f} MiB "
          f"(target < 2048)")


if __name__ == "__main__":
    main()
