"""Refreshes README's pictures from a real search: the MLflow UI, the parent run's description, its curves.

Run it after the main job (``mlflow run . -e tune --env-manager local``) in the
repository root, on a fresh store: it starts ``mlflow server`` on the job's
store and drives a fresh Chromium profile (playwright) to the links the job
prints, as a newcomer opens them: the search's trials by score, their charts,
then the parent run's description; it copies the run's
``evaluation/training_curves.png``. The Assistant panel MLflow opens on a
browser's first visit is closed first, as README says to.

usage: python docs/refresh_pictures.py [--store sqlite:///mlflow.db] [--experiment videoclf-demo]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _close_assistant(page) -> None:
    """MLflow's Assistant panel, open on a browser's first visit, closed as README says (the browser remembers)."""
    try:
        page.locator("button[aria-label*='lose']").last.click(timeout=5000)
    except Exception:  # noqa: BLE001 - another MLflow UI version without the panel: the picture is still right
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="videoclf-demo")
    args = parser.parse_args()
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    from videoclf.tracking import SEARCH_TAG
    from videoclf.ui_views import run_url, trials_url

    client = MlflowClient(args.store)
    experiment = client.get_experiment_by_name(args.experiment)
    parent = client.search_runs([experiment.experiment_id], "tags.videoclf_role = 'search'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(client.download_artifacts(parent.info.run_id, "evaluation/training_curves.png", tmp),
                    DOCS / "parent_run_curves.png")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", args.store,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            except OSError:
                time.sleep(1)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            search_id = parent.data.tags[SEARCH_TAG]
            page.goto(trials_url(experiment.experiment_id, search_id, port))
            page.get_by_text("trial-0", exact=False).first.wait_for(timeout=60000)
            _close_assistant(page)
            time.sleep(3)
            page.screenshot(path=str(DOCS / "mlflow_ui.png"))
            page.goto(trials_url(experiment.experiment_id, search_id, port, charts=True))
            page.get_by_text("Parallel Coordinates", exact=True).first.wait_for(timeout=60000)
            time.sleep(5)
            page.screenshot(path=str(DOCS / "mlflow_ui_charts.png"))
            page.goto(run_url(experiment.experiment_id, parent.info.run_id, port))
            page.get_by_text("champion vs baselines", exact=False).first.wait_for(timeout=60000)
            time.sleep(2)
            page.screenshot(path=str(DOCS / "parent_run_description.png"), full_page=True)
            browser.close()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    print(f"pictures of run {parent.info.run_id} written to {DOCS}")


if __name__ == "__main__":
    main()
