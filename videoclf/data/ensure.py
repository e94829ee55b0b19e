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

    generator = "data.demo" if config.data.demo is not None else (
        "data.photo_motion" if config.data.photo_motion is not None else None)
    if generator and holds_user_data(config.data.root):
        print(f"{config.data.root} holds its own train.csv/test.csv: using them; the {generator} generator is "
              f"skipped (set {generator}=null to silence this)", flush=True)
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
