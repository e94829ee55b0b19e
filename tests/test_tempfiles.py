"""Temporary folders: removed on every Python exit path, swept once their process is gone."""

import os
import subprocess
import sys
import time

from videoclf.tempfiles import private_folder, sweep_stale


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_folders_of_gone_processes_are_swept_and_live_or_young_ones_stay(tmp_path):
    old = time.time() - 3600
    dead, live = _dead_pid(), os.getppid()
    stale = tmp_path / f"videoclf-request-{dead}-abc"
    young = tmp_path / f"videoclf-report-{dead}-def"
    running = tmp_path / f"videoclf-eval-{live}-ghi"
    foreign = tmp_path / f"other-request-{dead}-xyz"
    for folder in (stale, young, running, foreign):
        (folder / "video-0").parent.mkdir()
        (folder / "video-0").write_bytes(b"x")
    for folder in (stale, running, foreign):
        os.utime(folder, (old, old))
    assert sweep_stale(tmp_path) == [stale]
    assert not stale.exists() and young.exists() and running.exists() and foreign.exists()


def test_a_private_folder_names_its_process_and_goes_with_its_block():
    with private_folder("request") as folder:
        assert f"videoclf-request-{os.getpid()}-" in folder and os.path.isdir(folder)
    assert not os.path.exists(folder)
