"""Feature-extraction speed against the machine's limit, measured side by side in one run.

For each extractor (EfficientNet-Lite0 with its ImageNet weights, InceptionV3
with random weights: speed does not depend on them), at 224 px, 20 frames a
video, on a UCF101-shaped corpus (320x240 XVID, ../shared/bench/make_speed_corpus.py):

- the machine's fp32 peak, measured here with a large matmul (NumPy and
  TensorFlow, the better of the two);
- the pure forward pass on random frames, batch 32, on TensorFlow (today's
  runtime), on LiteRT/XNNPACK fp32 and on LiteRT int8 (``extractor.precision:
  int8``): frames/s, achieved GFLOP/s (2 × multiply-adds counted from the
  layers; int8 counted as the same work) and the share of the measured fp32 peak;
- ``videoclf`` extraction in-process, cold cache, on each of the three, beside
  its ceiling on this machine: decoding (measured alone: CPU seconds a frame,
  one FFmpeg thread as videoclf decodes, beside FFmpeg's frame threads)
  and the forward pass share the cores, so frames/s can be at most
  1 / (1 / forward + decode CPU seconds a frame / cores);
- whole processes, wall clock including imports and model build:
  ``videoclf extract`` on each (LiteRT with and without its converted model
  kept from an earlier run) vs the seed notebook's loop
  (../shared/bench/seed_extract.py, InceptionV3 only);
- the demo config's main-job extraction (375 MJPG videos) on each of the three;
- the motion stream's cost (``--motion-only`` runs just these): decoding with
  and without the optical flow at each sampled frame (CPU a frame), Lite0
  extraction in-process (LiteRT fp32) with and without it, the motion stream
  added to an existing appearance cache (no CNN), and the demo's whole
  ``videoclf extract`` with and without it;
- the candidates for Lite0 side by side (``--candidates-only`` runs just these):
  TensorFlow fp32 (the reference), XLA, Keras mixed bfloat16, LiteRT fp32 at 4
  and 32 frames a call, LiteRT with int8 weights, LiteRT full int8 (calibrated
  on real photos), LiteRT int8 with the worst third of its layers in float
  (``precision: int8``), each with its frames/s and how far its features move; and
  decoding demo MJPG clips by grabbing every frame vs seeking to the sampled ones.

Every row but the motion rows runs with the motion stream off.

usage: python benchmarks/extract_speed.py [--videos 40] [--shared ../shared] [--skip-demo] [--candidates-only]
                                          [--motion-only]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from videoclf.config import load_config  # noqa: E402
from videoclf.data.videos import split_videos  # noqa: E402
from videoclf.features.extract import extract_videos  # noqa: E402
from videoclf.features.backbones import resolve_weights  # noqa: E402

SIZE, LENGTH, BATCH = 224, 20, 32
APPEARANCE_ONLY = ["motion.enabled=false", "search.streams=[appearance]", "tuning.baselines=[pooled_logreg]",
                   "tuning.first_trials=[]"]
VARIANTS = {"tensorflow": ("tensorflow", "float32"), "litert": ("litert", "float32"), "litert int8": ("litert", "int8")}


def peak_gflops() -> float:
    """fp32 matmul GFLOP/s, the better of NumPy (BLAS) and TensorFlow (oneDNN), 4096², best of 5."""
    import numpy as np
    import tensorflow as tf

    n = 4096
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    best = 0.0
    for matmul in (lambda: a @ a, lambda: tf.linalg.matmul(a, a).numpy()):
        matmul()
        for _ in range(5):
            started = time.perf_counter()
            matmul()
            best = max(best, 2 * n**3 / (time.perf_counter() - started) / 1e9)
    return best


def gflop_per_frame(name: str) -> float:
    """2 × multiply-adds of the convolutions and dense layers, counted from the Keras model."""
    import keras

    from videoclf.config import ExtractorConfig
    from videoclf.features.backbones import build_keras_extractor, resolve_weights

    config = ExtractorConfig(name=name, weights="none")

    def macs(model) -> int:
        total = 0
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                total += macs(layer)
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                out = layer.output.shape
                total += out[1] * out[2] * out[3] * layer.kernel_size[0] * layer.kernel_size[1]
            elif isinstance(layer, keras.layers.Conv2D):
                out = layer.output.shape
                total += out[1] * out[2] * out[3] * layer.kernel_size[0] * layer.kernel_size[1] * layer.input.shape[-1]
            elif isinstance(layer, keras.layers.Dense):
                total += layer.input.shape[-1] * layer.units
        return total

    return 2 * macs(build_keras_extractor(config, SIZE, resolve_weights(config))) / 1e9


def pure_forward(config, batches: int = 10) -> float:
    import numpy as np

    from videoclf.features.backbones import resolve_weights
    from videoclf.features.runtime import build_frame_model

    extractor = config.extractor
    model = build_frame_model(extractor, config.sampling, resolve_weights(extractor))
    frames = np.random.default_rng(0).integers(0, 255, (BATCH, SIZE, SIZE, 3), dtype=np.uint8)
    model(frames)
    started = time.perf_counter()
    for _ in range(batches):
        model(frames)
    return batches * BATCH / (time.perf_counter() - started)


def _set(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def motion_rows(videos, csv: Path, root: Path, tmp: Path, demo_root: Path | None, env: dict) -> list[str]:
    """What the motion stream costs beside Lite0 extraction (LiteRT fp32), side by side in this run."""
    from videoclf.features import decode
    from videoclf.features.motion import FlowDescriber

    import cv2

    lines = ["\nmotion stream (DIS ultrafast, 128 px grey frames, 2x2 grid) beside Lite0 extraction (LiteRT fp32):"]
    timings = {}
    opencv_threads = cv2.getNumThreads()
    for label, motion, threads in (("decoding alone", None, 1), ("decoding + motion", FlowDescriber(), 1),
                                   ("decoding + motion, OpenCV's own threads", FlowDescriber(), opencv_threads)):
        cv2.setNumThreads(threads)  # extraction decodes a file per core, each with one OpenCV thread
        started, cpu, frames = time.perf_counter(), time.process_time(), 0
        for video in videos:
            frames += decode.decode_sampled(video.path, LENGTH, SIZE, motion=motion).count
        timings[label] = ((time.process_time() - cpu) / frames, frames / (time.perf_counter() - started))
        lines.append(f"  {label:44s}{timings[label][1]:7.0f} sampled frames/s, {timings[label][0] * 1e3:.2f} ms CPU "
                     f"a frame, one file at a time")
    cv2.setNumThreads(opencv_threads)
    base = [f"data.root={root}", "extractor.name=efficientnet_lite0", "extractor.runtime=litert",
            f"sampling.max_seq_length={LENGTH}", f"sampling.image_size={SIZE}", f"extractor.batch_size={BATCH}"]
    rates = {}
    for label, extra in (("in-process, appearance only", APPEARANCE_ONLY), ("in-process, appearance + motion", [])):
        config = load_config(REPO / "experiments" / "demo.yaml", base + extra + [f"cache.dir={tmp / f'm-{len(rates)}'}"])
        report = extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
        rates[label] = report.seconds
        lines.append(f"  {label:44s}{report.seconds:7.2f} s  {report.frames / report.seconds:7.1f} frames/s")
    config = load_config(REPO / "experiments" / "demo.yaml", base + [f"cache.dir={tmp / 'm-0'}"])  # appearance cached
    added = extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
    ratio = rates["in-process, appearance + motion"] / rates["in-process, appearance only"]
    lines.append(f"  {'motion added to the cached appearance':44s}{added.seconds:7.2f} s  (no CNN: "
                 f"{added.extracted} videos through the model)")
    lines.append(f"  motion's cost: {ratio - 1:+.1%} of appearance-only extraction time; decoding "
                 f"{timings['decoding + motion'][0] / timings['decoding alone'][0]:.2f}x the CPU a frame")
    if demo_root is not None:
        walls = {}
        for label, extra in (("converting", APPEARANCE_ONLY), ("appearance only", APPEARANCE_ONLY),
                             ("appearance + motion", [])):  # the first run converts the extractor: not compared
            walls[label] = timed_process(
                [sys.executable, "-m", "videoclf", "extract", "--config", str(REPO / "experiments" / "demo.yaml"),
                 *_set([f"data.root={demo_root}", *extra, f"cache.dir={tmp / f'demo-motion-{len(walls)}'}"])],
                {**env, "VIDEOCLF_RUNTIME_CACHE": str(tmp / "runtimes-motion")})
        lines.append(f"  demo main job's extraction (375 videos), whole process: appearance only "
                     f"{walls['appearance only']:.1f} s, with motion {walls['appearance + motion']:.1f} s "
                     f"({walls['appearance + motion'] / walls['appearance only'] - 1:+.1%}; both with the "
                     "converted extractor kept)")
    return lines


def decode_only(videos, frame_threads: bool = False) -> tuple[float, float, list]:
    """Decoding alone, one thread (what a decode thread of extraction does): sampled frames/s, CPU seconds a
    frame (all the process's threads: a decoder's own threads count) and the frames. ``frame_threads``: with
    FFmpeg's frame threading (OpenCV's default) instead of the one decoder thread videoclf asks for."""
    from videoclf.features import decode

    kept = decode._ONE_THREAD
    decode._ONE_THREAD = [] if frame_threads else kept
    try:
        started, cpu, clips = time.perf_counter(), time.process_time(), []
        for video in videos:
            clips.append(decode.decode_sampled(video.path, LENGTH, SIZE).frames)
    finally:
        decode._ONE_THREAD = kept
    frames = sum(len(c) for c in clips)
    return frames / (time.perf_counter() - started), (time.process_time() - cpu) / frames, clips


def _photos(size: int, count: int):
    """Real photos (scikit-image's), as uint8 RGB frames: features and int8 calibration need real content."""
    import cv2
    import numpy as np
    import skimage.data

    names = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry")
    images = [getattr(skimage.data, n)() for n in names]
    images = [np.stack([i] * 3, -1) if i.ndim == 2 else i[..., :3] for i in images]
    return np.stack([cv2.resize(images[k % len(images)], (size, size), interpolation=cv2.INTER_AREA)
                     for k in range(count)]).astype(np.uint8)


def candidates(demo_root: Path | None) -> list[str]:
    """Lite0 at 224 px on each candidate runtime: frames/s and the features' distance to TensorFlow fp32."""
    import keras
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from videoclf.config import ExtractorConfig
    from videoclf.features.backbones import build_keras_extractor
    from videoclf.features.runtime import LITERT_BATCH, TensorFlowFrames, convert_to_litert

    config = ExtractorConfig(name="efficientnet_lite0", weights="imagenet", batch_size=BATCH)
    weights = resolve_weights(config)
    frames = _photos(SIZE, BATCH)
    model = build_keras_extractor(config, SIZE, weights)
    reference = TensorFlowFrames(model, BATCH, SIZE, 1280)

    def speed(run, calls: int = 6) -> tuple[float, np.ndarray]:
        out = run(frames)
        started = time.perf_counter()
        for _ in range(calls):
            run(frames)
        return calls * BATCH / (time.perf_counter() - started), np.asarray(out, np.float32)

    def interpreter(flatbuffer: bytes, chunk: int):
        it = Interpreter(model_content=flatbuffer, num_threads=os.cpu_count())
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]

        def run(batch):
            outs = []
            for start in range(0, len(batch), chunk):
                it.set_tensor(i["index"], batch[start: start + chunk])
                it.invoke()
                value = it.get_tensor(o["index"]).astype(np.float32)
                scale, zero = o["quantization"]
                outs.append((value - zero) * scale if scale else value)
            return np.concatenate(outs)
        return run

    def converted(chunk: int, mode: str | None = None) -> bytes:
        traced = TensorFlowFrames(model, chunk, SIZE, 1280, warm=False)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([traced.forward.get_concrete_function()],
                                                                    traced.forward)
        if mode:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "int8":
            converter.representative_dataset = lambda: ([frames[k: k + chunk]] for k in range(0, BATCH, chunk))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()

    @tf.function(input_signature=[tf.TensorSpec([BATCH, SIZE, SIZE, 3], tf.uint8)], jit_compile=True)
    def xla(batch):
        return model(tf.cast(batch, tf.float32), training=False)

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    bf16_model = build_keras_extractor(config, SIZE, weights)
    keras.mixed_precision.set_global_policy("float32")
    bf16 = TensorFlowFrames(bf16_model, BATCH, SIZE, 1280)

    base_speed, base = speed(reference)
    rows = [("TensorFlow fp32 (reference)", base_speed, base),
            ("XLA jit_compile", *speed(lambda b: xla(b).numpy(), calls=2)),
            ("Keras mixed_bfloat16", *speed(bf16)),
            ("LiteRT fp32, 32 frames a call", *speed(interpreter(convert_to_litert(model, 32, SIZE), 32))),
            ("LiteRT fp32, 4 frames a call (kept)", *speed(interpreter(convert_to_litert(model, 4, SIZE), 4))),
            ("LiteRT int8 weights (dynamic range)", *speed(interpreter(converted(4, "dynamic"), 4))),
            ("LiteRT full int8 (calibrated)", *speed(interpreter(converted(4, "int8"), 4))),
            ("LiteRT int8, worst third float (kept: int8)",
             *speed(interpreter(convert_to_litert(model, LITERT_BATCH, SIZE, "int8"), LITERT_BATCH)))]
    lines = [f"\nLite0 candidates at {SIZE} px on real photos (features vs TensorFlow fp32):",
             f"  {'':40s}{'frames/s':>9s}{'max |diff| / max|f|':>21s}{'min cosine':>12s}"]
    for label, fps, features in rows:
        diff = np.abs(features - base).max() / np.abs(base).max()
        cosine = ((features * base).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(base, axis=1)).min()
        lines.append(f"  {label:40s}{fps:9.1f}{diff:21.1e}{cosine:12.6f}")
    if demo_root is not None:
        import cv2

        from videoclf.features.decode import decode_sampled, to_model_frame
        from videoclf.features.sample import uniform_indices

        videos = sorted(demo_root.glob("*.avi"))[:80]
        started = time.perf_counter()
        grabbed = [decode_sampled(v, LENGTH, SIZE).frames for v in videos]
        grab_rate = len(videos) * LENGTH / (time.perf_counter() - started)
        started = time.perf_counter()
        same = True
        for video, expected in zip(videos, grabbed):
            capture = cv2.VideoCapture(str(video))
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            sought = []
            for index in uniform_indices(count, LENGTH):
                capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
                sought.append(to_model_frame(capture.read()[1], SIZE, "none"))
            capture.release()
            same = same and np.array_equal(np.stack(sought), expected)
        seek_rate = len(videos) * LENGTH / (time.perf_counter() - started)
        lines.append(f"decoding {len(videos)} demo MJPG clips: grabbing every frame {grab_rate:.0f} sampled frames/s, "
                     f"seeking to the sampled ones {seek_rate:.0f} (same frames: {same})")
    return lines


def timed_process(args: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--skip-demo", action="store_true", help="skip the demo main-job extraction")
    parser.add_argument("--candidates-only", action="store_true", help="only the Lite0 candidates and decoding")
    parser.add_argument("--motion-only", action="store_true", help="only the motion stream's cost")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    lines = []

    with tempfile.TemporaryDirectory(prefix="videoclf-bench-") as tmp:
        tmp = Path(tmp)
        demo_root = tmp / "demo"
        if not args.skip_demo:
            subprocess.run([sys.executable, "-m", "videoclf", "data", "demo", "--config",
                            str(REPO / "experiments" / "demo.yaml"), "--out", str(demo_root)], check=True,
                           capture_output=True, env=env)
        if args.candidates_only:
            print("\n".join(candidates(None if args.skip_demo else demo_root)))
            return
        subprocess.run([sys.executable, str(args.shared / "bench" / "make_speed_corpus.py"), str(tmp / "corpus"),
                        str(args.videos)], check=True, capture_output=True)
        csv, root = tmp / "corpus" / "speed.csv", tmp / "corpus" / "videos"
        if args.motion_only:
            corpus_videos = split_videos(load_config(REPO / "experiments" / "demo.yaml", [f"data.root={root}"]),
                                         "train", csv, root)[0]
            print("\n".join(motion_rows(corpus_videos, csv, root, tmp, None if args.skip_demo else demo_root, env)))
            return
        peak = peak_gflops()
        lines.append(f"machine: {os.cpu_count()} cores, measured fp32 peak (4096² matmul) {peak:.0f} GFLOP/s; "
                     f"corpus {args.videos} videos 320x240 XVID, {SIZE} px, {LENGTH} frames a video, batch {BATCH}")
        import numpy as np

        corpus_config = load_config(REPO / "experiments" / "demo.yaml", [f"data.root={root}"])
        corpus_videos = split_videos(corpus_config, "train", csv, root)[0]
        threaded_rate, threaded_cpu, threaded = decode_only(corpus_videos, frame_threads=True)
        decode_rate, decode_cpu, clips = decode_only(corpus_videos)
        same = all(np.array_equal(a, b) for a, b in zip(clips, threaded))
        lines.append(f"decoding alone, one thread: {decode_rate:.0f} sampled frames/s, {decode_cpu * 1e3:.2f} ms CPU "
                     f"a frame (with FFmpeg's frame threads, OpenCV's default: {threaded_rate:.0f} frames/s, "
                     f"{threaded_cpu * 1e3:.2f} ms CPU a frame; same frames: {same})")
        for name, weights in (("efficientnet_lite0", "imagenet"), ("inception_v3", "none")):
            flop = gflop_per_frame(name)
            lines.append(f"\n{name} ({flop:.2f} GFLOP a frame)")
            lines.append(f"  {'':44s}{'frames/s':>9s}{'GFLOP/s':>9s}{'of peak':>9s}   in-process: ceiling, share")
            speeds = {}
            for variant, (runtime, precision) in VARIANTS.items():
                overrides = [f"data.root={root}", f"extractor.name={name}", f"extractor.weights={weights}",
                             f"extractor.runtime={runtime}", f"extractor.precision={precision}",
                             f"cache.dir={tmp / f'cache-{name}-{runtime}-{precision}'}",
                             f"sampling.max_seq_length={LENGTH}", f"sampling.image_size={SIZE}",
                             f"extractor.batch_size={BATCH}", *APPEARANCE_ONLY]
                config = load_config(REPO / "experiments" / "demo.yaml", overrides)
                forward = pure_forward(config)
                videos, _ = split_videos(config, "train", csv, root)
                report = extract_videos(config, videos, resolve_weights(config.extractor), progress=False)
                speeds[variant] = (forward, report.frames_per_second)
                ceiling = 1 / (1 / forward + decode_cpu / (os.cpu_count() or 1))
                for label, fps, extra in (
                        (f"pure forward, {variant}", forward, ""),
                        (f"videoclf extract in-process, {variant}", report.frames_per_second,
                         f"   {ceiling:.1f}, {report.frames_per_second / ceiling:.0%}")):
                    lines.append(f"  {label:44s}{fps:9.1f}{fps * flop:9.0f}{fps * flop / peak:9.0%}{extra}")
            for variant in ("litert", "litert int8"):
                forward_ratio = speeds[variant][0] / speeds["tensorflow"][0]
                extract_ratio = speeds[variant][1] / speeds["tensorflow"][1]
                lines.append(f"  {variant}/tensorflow: pure forward {forward_ratio:.2f}x, in-process extraction "
                             f"{extract_ratio:.2f}x")

            # Whole processes, fresh feature caches; LiteRT once converting, once with the converted model kept.
            walls = {}
            runtimes = tmp / f"runtimes-{name}"
            for label, variant in (("tensorflow", "tensorflow"), ("litert, converting", "litert"),
                                   ("litert, converted model kept", "litert"),
                                   ("litert int8, converting", "litert int8"),
                                   ("litert int8, converted model kept", "litert int8")):
                runtime, precision = VARIANTS[variant]
                walls[label] = timed_process(
                    [sys.executable, "-m", "videoclf", "extract", "--config", str(REPO / "experiments" / "demo.yaml"),
                     "--csv", str(csv), "--root", str(root), "--set", f"extractor.name={name}", "--set",
                     f"extractor.weights={weights}", "--set", f"extractor.runtime={runtime}", "--set",
                     f"extractor.precision={precision}", "--set",
                     f"cache.dir={tmp / f'process-{name}-{len(walls)}'}", "--set", f"extractor.batch_size={BATCH}",
                     *_set(APPEARANCE_ONLY)],
                    {**env, "VIDEOCLF_RUNTIME_CACHE": str(runtimes)})
            frames = args.videos * LENGTH
            if name == "inception_v3":
                walls["seed loop"] = timed_process([sys.executable, str(args.shared / "bench" / "seed_extract.py"),
                                                    str(csv), str(root), str(SIZE), str(LENGTH)])
            lines.append("  whole process, wall clock (imports, model build, decode, extraction):")
            for label, seconds in walls.items():
                extra = f"   seed/this {walls['seed loop'] / seconds:.2f}x" if "seed loop" in walls else ""
                lines.append(f"    {label:42s}{seconds:7.1f} s  {frames / seconds:6.1f} frames/s{extra}")

        if not args.skip_demo:
            lines.append("\ndemo main job's extraction (experiments/demo.yaml: 375 MJPG videos, Lite0), whole process:")
            demo = {}
            for variant, (runtime, precision) in VARIANTS.items():  # the converted Lite0s are kept from above
                demo[variant] = timed_process(
                    [sys.executable, "-m", "videoclf", "extract", "--config", str(REPO / "experiments" / "demo.yaml"),
                     "--set", f"data.root={demo_root}", "--set", f"extractor.runtime={runtime}", "--set",
                     f"extractor.precision={precision}", "--set", f"cache.dir={tmp / f'demo-cache-{variant}'}",
                     *_set(APPEARANCE_ONLY)],
                    {**env, "VIDEOCLF_RUNTIME_CACHE": str(tmp / "runtimes-efficientnet_lite0")})
                lines.append(f"    {variant:42s}{demo[variant]:7.1f} s   tensorflow/this "
                             f"{demo['tensorflow'] / demo[variant]:.2f}x")
        lines += motion_rows(corpus_videos, csv, root, tmp, None if args.skip_demo else demo_root, env)
        lines += candidates(None if args.skip_demo else demo_root)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
