"""Makes sure the config's data exists before anything reads it."""

from __future__ import annotations

from videoclf.config import Config
from videoclf.errors import DataError


def ensure_data(config: Config) -> None:
    """Writes the demo or photo-motion set when the config asks for it (a no-op when current); else checks the CSVs.

    A ``data.root`` that already holds the user's own CSVs is used as it is, never overwritten, so
    ``--set data.root=/my/videos`` works with the demo config.
    """
    from videoclf.data.generated import holds_user_data

    generator = _generator(config)
    if generator and holds_user_data(config.data.root):
        pass  # the user's own data (see for_own_data): used as it is, never overwritten
    elif generator:
        from videoclf.data.demo import generate_demo
        from videoclf.data.photo_motion import generate_photo_motion
        from videoclf.locks import waiting_lock

        # two jobs started together on a fresh machine must not write the same videos at once
        with waiting_lock(config.data.root / ".videoclf-generating.lock",
                          f"{config.data.root}: waiting for another process generating the data"):
            if config.data.demo is not None:
                generate_demo(config.data.root, config.data.demo)
            else:
                generate_photo_motion(config.data.root, config.data.photo_motion)
        return
    for split in ("train", "test"):
        if not config.data.csv_path(split).is_file():
            raise DataError(
                f"{config.data.csv_path(split)} not found. For UCF101 run: videoclf data ucf101 --root DIR; "
                "for the offline demo use --config experiments/demo.yaml"
            )


def _generator(config: Config) -> str | None:
    if config.data.demo is not None:
        return "demo"
    return "photo_motion" if config.data.photo_motion is not None else None


def for_own_data(config: Config, defaults: bool = False) -> tuple[Config, str | None]:
    """A config whose generator would write ``data.root`` (or the built-in ``defaults``, used where no config file
    is, with ``--set data.root``), pointed at a folder of the user's own CSVs: the same config with its own names
    (experiment, registered model: ``videoclf-<folder>``, unless set on the command line), so the user's model never
    becomes a version of the demo's, and ``predict`` finds the model trained there. Returns it and the run name (the
    folder's); ``(config, None)`` for any other config."""
    import re

    from videoclf.data.generated import holds_user_data

    named = defaults and config.was_set("data.root")
    if (_generator(config) is None and not named) or not holds_user_data(config.data.root):
        return config, None
    folder = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.data.root.resolve().name).strip("-.") or "data"
    names = {key: f"videoclf-{folder}" for key in ("experiment_name", "registered_model_name")
             if not config.was_set(f"tracking.{key}")}
    generator = _generator(config)
    data = config.data.model_copy(update={generator: None}) if generator else config.data  # nothing generated there
    return config.model_copy(update={"data": data, "tracking": config.tracking.model_copy(update=names)}), folder

