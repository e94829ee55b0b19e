"""The ``videoclf`` console script: thin glue from arguments to the pipeline.

Every subcommand takes ``--config`` (default experiments/demo.yaml) and
``--set section.key=value`` overrides. User errors print one message and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from videoclf.config import DEFAULT_CONFIG, Config, load_config
from videoclf.errors import VideoclfError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help=f"experiment YAML, or a shipped config's name from any folder (demo, photo_motion, "
                             f"...; default: {DEFAULT_CONFIG})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set tuning.max_trials=3 (repeatable)")


def _config(args: argparse.Namespace, extra: list[str] | None = None, optional: bool = False) -> Config:
    """The experiment config; with ``optional``, built-in defaults when the default file is absent
    (predict/evaluate run from any directory: the model carries its own settings)."""
    from videoclf.data.ensure import for_own_data

    overrides = list(args.overrides) + (extra or [])
    if optional and args.config == DEFAULT_CONFIG and not _config_found(args.config):
        config, args.own_data = for_own_data(load_config(None, overrides, defaults_only=True), defaults=True)
        return config
    config, args.own_data = for_own_data(load_config(args.config, overrides))
    return config


def _config_found(path: Path) -> bool:
    from videoclf.config import config_path
    from videoclf.errors import ConfigError

    try:
        config_path(path)
    except ConfigError:
        return False
    return True


def cmd_init(args: argparse.Namespace) -> None:
    """Copies a shipped config here to start from."""
    import shutil

    from videoclf.config import shipped_configs

    shipped = shipped_configs()
    name = Path(args.name).stem
    if name not in shipped:
        raise VideoclfError(f"No shipped config named {args.name!r}. Shipped: {', '.join(shipped)}.")
    target = args.to or Path(f"{name}.yaml")
    if target.exists():
        raise VideoclfError(f"{target} exists; pass --to with another path (nothing was overwritten).")
    shutil.copyfile(shipped[name], target)
    print(f"{target}: a copy of the shipped '{name}' config; edit it (data.root: your folder of videos with "
          f"train.csv and test.csv), then run: videoclf tune --config {target}")


def _quiet_tensorflow() -> None:
    """Imports TensorFlow before a command that uses it, its start-up lines silenced unless ``--verbose``
    (imported here, not at the top: ``videoclf --help`` and config errors stay instant)."""
    from videoclf.console import quiet_tensorflow

    quiet_tensorflow()


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N like 0/4. Received: {text!r}") from None
    if not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N. Received: {text!r}")
    return shard


def cmd_data_demo(args: argparse.Namespace) -> None:
    from videoclf.data.demo import generate_demo
    from videoclf.config import DemoConfig

    config = _config(args)
    out = args.out or config.data.root
    generate_demo(out, config.data.demo or DemoConfig(), force=args.force)
    print(f"demo data set ready in {out} (train.csv, test.csv)")


def cmd_data_photo_motion(args: argparse.Namespace) -> None:
    from videoclf.config import PhotoMotionConfig
    from videoclf.data.photo_motion import generate_photo_motion

    config = _config(args)
    out = args.out or config.data.root
    generate_photo_motion(out, config.data.photo_motion or PhotoMotionConfig(), force=args.force)
    print(f"photo-motion data set ready in {out} (train.csv, test.csv)")


def cmd_data_ucf101(args: argparse.Namespace) -> None:
    from videoclf.data.ucf101 import SEED_CLASSES, prepare_ucf101

    classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else SEED_CLASSES
    overrides = prepare_ucf101(args.root, args.splits, classes, args.split, args.out)
    print("CSV files ready. Use them with:")
    print("  videoclf tune --config experiments/ucf101_top5.yaml "
          + " ".join(f"--set {k}={v}" for k, v in overrides.items()))


def cmd_extract(args: argparse.Namespace) -> None:
    from videoclf.data.ensure import ensure_data
    from videoclf.data.videos import split_videos
    from videoclf.features.cache import open_cache, open_motion_cache
    from videoclf.features.extract import extract_videos
    from videoclf.features.backbones import resolve_weights

    extra = [f"data.root={args.root}"] if args.root else []
    config = _config(args, extra)  # TensorFlow is imported only if a model must be built (features/runtime.py)
    weights = resolve_weights(config.extractor)
    if args.rebuild:
        for cache in filter(None, (open_cache(config, weights), open_motion_cache(config))):
            cache.clear()
            print(f"cleared {cache.path}")
    if args.csv:
        root = Path(args.root) if args.root else config.data.root
        jobs = {str(args.csv): split_videos(config, "train", Path(args.csv), root)[0]}
    else:
        from videoclf.dataset import refuse_missing_files

        ensure_data(config)
        refuse_missing_files(config)  # before any video is decoded
        jobs = {split: split_videos(config, split)[0] for split in ("train", "test")}
    for name, videos in jobs.items():
        report = extract_videos(config, videos, weights, shard=args.shard)
        speed = f", {report.frames_per_second:.1f} frames/s" if report.extracted else ""
        part = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
        motion = f"; motion stream: {report.motion_extracted} computed now" if config.motion.enabled else ""
        views = f" in {report.views} views each" if report.views > 1 else ""
        print(f"{name}{part}: {report.requested - len(report.bad)}/{report.requested} videos cached{views} "
              f"({report.extracted} extracted now{speed}{motion}) in {report.cache_path}"
              f"{' and its views beside it' if views else ''}")
        if report.bad:
            print(f"  {len(report.bad)} bad videos skipped; reasons in {report.bad_report}")


def cmd_tune(args: argparse.Namespace) -> None:
    extra = [f"tuning.max_trials={args.max_trials}"] if args.max_trials else []
    config = _config(args, extra)  # config errors come before TensorFlow is imported
    name = args.own_data or args.config.stem
    if args.own_data:
        print(f"{config.data.root}: your own train.csv/test.csv (nothing is generated there); results go to "
              f"experiment '{config.tracking.experiment_name}', model '{config.tracking.registered_model_name}', "
              f"run '{name}' (choose with --set tracking.experiment_name=... / tracking.registered_model_name=...)",
              flush=True)
    _quiet_tensorflow()
    from videoclf.search.run import run_search

    if args.local_workers:
        from videoclf.search.cluster import run_with_local_workers

        worker_args = ["--config", str(args.config), *[a for o in args.overrides for a in ("--set", o)],
                       "--max-trials", str(args.max_trials)]
        run_with_local_workers(config, name, worker_args, args.local_workers)
    else:
        run_search(config, name=name)


def cmd_predict(args: argparse.Namespace) -> None:
    config = _config(args, optional=True)  # TensorFlow is imported only if the model needs it (a GPU, an old model)
    from videoclf.registered.use import default_model_uri, predict_videos

    predict_videos(args.videos, args.model or default_model_uri(config), args.gif, args.csv, args.window, args.stride,
                   config)


def cmd_evaluate(args: argparse.Namespace) -> None:
    config = _config(args)
    from videoclf.registered.use import default_model_uri, evaluate_model

    evaluate_model(config, args.model or default_model_uri(config), args.split)


def cmd_serve(args: argparse.Namespace) -> None:
    from videoclf.config import updated

    config = _config(args, optional=True)
    flags = {"host": args.host, "port": args.port, "workers": args.workers, "max_videos": args.max_videos,
             "max_request_mb": args.max_request_mb, "timeout_s": args.timeout, "max_waiting": args.max_waiting,
             "body_timeout_s": args.body_timeout, "shutdown_s": args.shutdown_timeout,
             "allowed_roots": [*config.serving.allowed_roots, *args.allow_root] if args.allow_root else None}
    serving = updated(config.serving, flags, "(videoclf serve flags)")
    from videoclf.registered.server import serve
    from videoclf.registered.use import default_model_uri

    serve(args.model or default_model_uri(config), serving, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoclf", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's start-up log lines (CUDA probing and the like)")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="write the demo data set or prepare UCF101 CSVs")
    data_kinds = data.add_subparsers(dest="kind", required=True)
    demo = data_kinds.add_parser("demo", help="write the embedded synthetic demo set")
    _common(demo)
    demo.add_argument("--out", type=Path, help="output folder (default: data.root of the config)")
    demo.add_argument("--force", action="store_true", help="rewrite even if the set on disk is current")
    demo.set_defaults(func=cmd_data_demo)
    photo = data_kinds.add_parser("photo-motion", help="write the embedded photo-motion set (real photos, "
                                                        "motion-defined classes)")
    _common(photo)
    photo.set_defaults(config=Path("experiments/photo_motion.yaml"))
    photo.add_argument("--out", type=Path, help="output folder (default: data.root of the config)")
    photo.add_argument("--force", action="store_true", help="rewrite even if the set on disk is current")
    photo.set_defaults(func=cmd_data_photo_motion)
    ucf = data_kinds.add_parser("ucf101", help="build train.csv/test.csv from the official UCF101 layout")
    ucf.add_argument("--root", type=Path, required=True, help="folder holding ClassName/v_*.avi")
    ucf.add_argument("--splits", type=Path, help="ucfTrainTestlist folder (default: ROOT/ucfTrainTestlist)")
    ucf.add_argument("--classes", help="comma-separated classes (default: the seed's five)")
    ucf.add_argument("--split", type=int, default=1, choices=(1, 2, 3))
    ucf.add_argument("--out", type=Path, help="where to write the CSVs (default: ROOT)")
    ucf.set_defaults(func=cmd_data_ucf101)

    init = commands.add_parser("init", help="copy a shipped experiment config here to start from")
    init.add_argument("name", nargs="?", default="demo", help="demo, photo_motion, ucf101_top5, ... (default: demo)")
    init.add_argument("--to", type=Path, help="where to write it (default: ./NAME.yaml)")
    init.set_defaults(func=cmd_init)

    extract = commands.add_parser("extract", help="fill the feature cache for the config's splits")
    _common(extract)
    extract.add_argument("--csv", type=Path, help="extract exactly the videos of this CSV")
    extract.add_argument("--root", type=Path, help="folder the CSV's video names are relative to")
    extract.add_argument("--rebuild", action="store_true", help="delete this config's cache first")
    extract.add_argument("--shard", type=_shard, metavar="I/N",
                         help="extract only shard I of N (0-based) into its own cache file; run N of these "
                              "side by side, readers see the union")
    extract.set_defaults(func=cmd_extract)

    tune = commands.add_parser("tune", help="KerasTuner search tracked in MLflow; registers the winner")
    _common(tune)
    tune.add_argument("--max-trials", type=lambda v: int(float(v)), default=0,
                      help="override tuning.max_trials (0: keep config)")
    tune.add_argument("--local-workers", type=int, default=0, metavar="N",
                      help="run a KerasTuner chief here plus N worker processes on this machine")
    tune.set_defaults(func=cmd_tune)

    predict = commands.add_parser("predict", help="class probabilities for video files from a registered model")
    _common(predict)
    predict.add_argument("videos", nargs="+", help="video files")
    predict.add_argument("--model", help="model URI (default: models:/<tracking.registered_model_name>@champion)")
    predict.add_argument("--gif", type=Path, help="write an animated GIF of the frames the model saw")
    predict.add_argument("--csv", type=Path, help="write all predictions to this CSV")
    predict.add_argument("--window", type=float, metavar="SECONDS",
                         help="predict each time window of this length (plus their mean), not the whole video: "
                              "for videos much longer than the training clips")
    predict.add_argument("--stride", type=float, metavar="SECONDS", help="step between windows (default: --window)")
    predict.set_defaults(func=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="score a registered model on a split; logged to MLflow")
    _common(evaluate)
    evaluate.add_argument("--model", help="model URI (default: models:/<tracking.registered_model_name>@champion)")
    evaluate.add_argument("--split", choices=("train", "test"), default="test")
    evaluate.set_defaults(func=cmd_evaluate)
    serve = commands.add_parser("serve", help="serve a registered model over HTTP (MLflow's scoring protocol, "
                                              "with limits and an allowed-root policy for paths)")
    _common(serve)
    serve.add_argument("--model", help="model URI (default: models:/<tracking.registered_model_name>@champion)")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes, each with its own copy of the model (default 1)")
    serve.add_argument("--allow-root", type=Path, action="append", default=[], metavar="DIR",
                       help="a folder whose files clients may name by video_path (repeatable; default: none, "
                            "clients send video_bytes)")
    serve.add_argument("--max-videos", type=int, help="videos per request (default 16)")
    serve.add_argument("--max-request-mb", type=float, help="request body size in MiB (default 64)")
    serve.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="per request, from its arrival; videos not started by then come back with an error "
                            "(default 60)")
    serve.add_argument("--max-waiting", type=int, help="requests queued per worker before 503 (default 8)")
    serve.add_argument("--body-timeout", type=float, metavar="SECONDS",
                       help="the whole request body must arrive within this; a slower upload gets 408 (default 30)")
    serve.add_argument("--shutdown-timeout", type=float, metavar="SECONDS",
                       help="on SIGTERM, how long running requests may finish before they are cut (default 5)")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        os.environ["VIDEOCLF_VERBOSE"] = "1"  # keeps the C++ libraries' start-up lines (console.silenced_stderr)
    else:  # MLflow's INFO lines (database creation, migrations) are not the user's business; warnings stay
        import logging

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        args.func(args)
    except VideoclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept (cache parts, MLflow runs); re-run to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
