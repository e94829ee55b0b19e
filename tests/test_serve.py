"""`videoclf serve` as real clients meet it: a real HTTP server on 127.0.0.1 serving the registered champion."""

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import mlflow
import pandas as pd
import pytest

from videoclf.registered.requests import ALLOWED_ROOTS_ENV, POSITIVE_RULE, WITHOUT_WINDOW
from videoclf.registered.server import NUMBER_OR_NULL
from videoclf.registered.wire import STRIDE_COLUMN, WINDOW_COLUMN

from conftest import MODEL, cli_env, free_port, searched_model, wait_until_up

MAX_VIDEOS = 4


def _strict_json(text: str):
    """Parses like JavaScript's JSON.parse: NaN / Infinity are errors."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@contextlib.contextmanager
def _running_server(searched, logs, *flags):
    """``videoclf serve`` of the searched champion in its own process group, its output in ``logs/serve.log``."""
    port = free_port()
    env = cli_env(MLFLOW_TRACKING_URI=searched["uri"])
    log = (logs / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "videoclf", "serve", "--model", MODEL, "--port", str(port),
                                *flags], cwd=searched["root"], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", process)
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "process": process, "log": log.name}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(searched, tmp_path_factory):
    """One server for the module: an allowed root with a video, a FIFO, a folder and a symlink out of it."""
    allowed = tmp_path_factory.mktemp("allowed")
    video = allowed / "clip.avi"
    video.write_bytes(searched["videos"][0].read_bytes())
    os.mkfifo(allowed / "pipe.avi")
    (allowed / "folder.avi").mkdir()
    (allowed / "escape.avi").symlink_to("/etc/passwd")
    with _running_server(searched, tmp_path_factory.mktemp("logs"), "--allow-root", str(allowed), "--max-videos",
                         str(MAX_VIDEOS), "--max-request-mb", "1", "--timeout", "120") as running:
        yield {**running, "allowed": allowed, "video": video}


def _post(url: str, payload, content_type: str = "application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, _strict_json(response.read().decode())
    except urllib.error.HTTPError as error:
        return error.code, _strict_json(error.read().decode())


def test_video_bytes_in_prediction_out(server, searched):
    sent = base64.b64encode(searched["videos"][1].read_bytes()).decode()
    junk = base64.b64encode(b"not a video").decode()
    status, answer = _post(server["url"], {"dataframe_records": [{"video_bytes": sent, "video_path": "mine.avi"},
                                                                 {"video_bytes": junk}]})
    assert status == 200
    good, bad = answer["predictions"]
    meta = ("video_path", "predicted_label", "error", "warning")
    probabilities = {k: v for k, v in good.items() if k not in meta}
    assert len(probabilities) == 5 and abs(sum(probabilities.values()) - 1) < 1e-3
    assert good["predicted_label"] == max(probabilities, key=probabilities.get) and good["error"] is None
    assert good["video_path"] == "mine.avi"
    assert bad["predicted_label"] is None and all(bad[c] is None for c in probabilities)  # null, never NaN
    assert bad["error"].startswith("video_bytes: OpenCV cannot open it") and "/tmp" not in bad["error"]


def test_paths_are_read_only_inside_the_allowed_root(server):
    allowed = server["allowed"]
    rows = [str(server["video"]), "/etc/passwd", str(allowed / "pipe.avi"), "/dev/zero", str(allowed / "escape.avi"),
            str(allowed / "folder.avi"), str(allowed / ("x" * 5000 + ".avi"))]
    errors = {}
    for start in range(0, len(rows), MAX_VIDEOS):
        chunk = rows[start: start + MAX_VIDEOS]
        # a FIFO or /dev/zero opened by the decoder would hang this request until the client gives up
        status, answer = _post(server["url"], {"dataframe_split": {"columns": ["video_path"],
                                                                   "data": [[r] for r in chunk]}})
        assert status == 200
        errors.update({path: row["error"] for row, path in zip(answer["predictions"], chunk)})
        for row, path in zip(answer["predictions"], chunk):
            assert (row["predicted_label"] is not None) == (path == str(server["video"])), row
    assert errors[str(server["video"])] is None
    assert "outside the folders this server may read" in errors["/etc/passwd"]
    assert "outside the folders this server may read" in errors["/dev/zero"]
    assert "outside the folders this server may read" in errors[str(allowed / "escape.avi")]  # symlink followed
    assert "not a regular file" in errors[str(allowed / "pipe.avi")]
    assert "is a folder" in errors[str(allowed / "folder.avi")]
    assert "File name too long" in errors[rows[-1]] and len(errors[rows[-1]]) < 400


def test_windows_through_the_server(server):
    status, answer = _post(server["url"], {"dataframe_split": {
        "columns": ["video_path", "window_seconds", "stride_seconds"],
        "data": [[str(server["video"]), None, None], [str(server["video"]), 0.4, 0.2]]}})
    assert status == 200
    rows = answer["predictions"]
    windows = [r for r in rows[1:] if r["kind"] == "window"]
    assert rows[0]["kind"] == "video" and rows[0]["window_start"] is None
    assert len(windows) >= 2 and rows[-1]["kind"] == "video"
    assert [w["window_start"] for w in windows] == sorted(w["window_start"] for w in windows)


def test_oversized_and_malformed_requests_are_refused_and_the_next_is_answered(server):
    path = str(server["video"])
    status, answer = _post(server["url"], {"dataframe_split": {"columns": ["video_path"],
                                                               "data": [[path]] * (MAX_VIDEOS + 1)}})
    assert status == 413 and "at most 4" in answer["message"]
    big = base64.b64encode(os.urandom(1_200_000)).decode()
    status, answer = _post(server["url"], {"dataframe_records": [{"video_bytes": big}]})
    assert status == 413 and "MiB" in answer["message"]
    status, answer = _post(server["url"], {"dataframe_records": [{"path": path}]})
    assert status == 400 and "video_path" in answer["message"] and "video_bytes" in answer["message"]
    status, answer = _post(server["url"], b"{not json")
    assert status == 400 and "not valid JSON" in answer["message"]
    status, answer = _post(server["url"], f"video_path\n{path}\n".encode(), "text/csv")  # MLflow's CSV format too
    assert status == 200 and answer["predictions"][0]["error"] is None
    status, answer = _post(server["url"], b"video_path=x", "text/plain")  # every answer is JSON, 415 too
    assert status == 415 and answer["error_code"] == "UNSUPPORTED_MEDIA_TYPE" and "content type" in answer["message"]


def test_registered_model_declares_inputs_and_outputs(searched):
    mlflow.set_tracking_uri(searched["uri"])
    try:
        signature = mlflow.models.get_model_info(MODEL).signature
    finally:
        mlflow.set_tracking_uri(None)
    inputs = {c.name: c.type.name for c in signature.inputs.inputs}
    assert inputs["video_path"] == "string" and inputs["video_bytes"] == "binary"
    outputs = {c.name for c in signature.outputs.inputs}
    assert {"predicted_label", "error"} <= outputs and len(outputs) >= 5 + 2


def test_a_request_past_its_time_limit_stops_taking_videos(searched):
    """In-process: the deadline the server sets per request; videos not started by then get an error."""
    from videoclf.registered.requests import REQUEST_DEADLINE

    model = searched_model(searched)
    token = REQUEST_DEADLINE.set(time.monotonic() - 1)
    try:
        table = model.predict(pd.DataFrame({"video_path": [str(v) for v in searched["videos"][:2]]}))
    finally:
        REQUEST_DEADLINE.reset(token)
    assert table.predicted_label.isna().all() and table.error.str.contains("time limit").all()


def _start_upload(port: int, declared: int, sent: bytes) -> socket.socket:
    """An upload that announces ``declared`` bytes and stalls after ``sent``, as a slow or stuck client does."""
    client = socket.create_connection(("127.0.0.1", port), timeout=60)
    client.sendall(f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {declared}\r\n\r\n".encode() + sent)
    return client


def _answer(client: socket.socket) -> tuple[int, dict]:
    raw = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := client.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), _strict_json(body.decode())


def test_slow_uploads_disconnects_and_sigterm_are_bounded_and_quiet(searched, tmp_path):
    """A server of its own (it is stopped here): a stalled upload gets 408 after --body-timeout; a client gone
    mid-upload is one log line; SIGTERM with an upload still stalled stops after --shutdown-timeout, no traceback."""
    with _running_server(searched, tmp_path, "--body-timeout", "2", "--shutdown-timeout", "1") as running:
        port = running["port"]
        with _start_upload(port, 1000, b'{"dataframe_records": ') as slow:
            status, answer = _answer(slow)  # the server answers: the client is not left hanging
        assert status == 408 and answer["error_code"] == "REQUEST_TIMEOUT" and "--body-timeout" in answer["message"]
        _start_upload(port, 1000, b'{"dataframe_records": ').close()  # gone mid-upload
        status, _ = _post(running["url"], {"dataframe_records": [{"video_path": "x.avi"}]})
        assert status == 200  # the server is fine, and the disconnect was logged by now
        process, stalled = running["process"], _start_upload(port, 1000, b"{")
        process.send_signal(signal.SIGTERM)  # as a process supervisor would
        process.wait(timeout=30)  # bounded by --shutdown-timeout (it was 67 s with a stalled upload before)
        stalled.close()
    # uvicorn shuts down gracefully, then re-raises the signal it caught (so the exit status says SIGTERM)
    assert process.returncode in (0, -signal.SIGTERM)
    log = open(running["log"]).read()
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert log.count("disconnected before its request body arrived") == 1, log


def test_bad_windows_over_http_are_row_errors(server):
    path = str(server["video"])
    status, answer = _post(server["url"], {"dataframe_split": {
        "columns": ["video_path", "window_seconds", "stride_seconds"],
        "data": [[path, 0, None], [path, -1, None], [path, None, 0.5], [path, 1.0, 0]]}})
    assert status == 200
    errors = [row["error"] for row in answer["predictions"]]
    assert all(e and POSITIVE_RULE in e for e in (errors[0], errors[1], errors[3]))
    assert f"{STRIDE_COLUMN} {WITHOUT_WINDOW} {WINDOW_COLUMN}" in errors[2]
    status, answer = _post(server["url"], {"dataframe_split": {"columns": ["video_path", "window_seconds"],
                                                               "data": [[path, "NaN"]]}})
    assert status == 400 and f"row 0: {WINDOW_COLUMN} {NUMBER_OR_NULL}. Received: 'NaN'" in answer["message"]
    status, answer = _post(server["url"], b'{"dataframe_split": {"columns": ["video_path", "window_seconds"], '
                                          b'"data": [["x.avi", NaN]]}}')
    assert status == 400 and "NaN is not a JSON value" in answer["message"]


def test_mlflow_models_serve_names_bad_bytes_and_missing_columns(searched, tmp_path):
    """MLflow's own server (README offers it too): what the model sees there is answered as clearly."""
    port = free_port()
    env = cli_env(MLFLOW_TRACKING_URI=searched["uri"])
    env.pop(ALLOWED_ROOTS_ENV, None)
    log = (tmp_path / "mlflow-serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", MODEL, "-p", str(port),
                                "--env-manager", "local"], cwd=tmp_path, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/ping", process)
        status, answer = _post(url, {"dataframe_records": [{"video_bytes": "!!!!"}]})  # decodes to no bytes at all
        assert status == 200
        assert "holds no bytes after base64 decoding: invalid base64" in answer["predictions"][0]["error"]
        status, answer = _post(url, {"dataframe_records": [{"path": "v.avi"}]})
        assert status == 400 and "stack_trace" not in answer
        assert "neither" in answer["message"] and "video_path" in answer["message"], answer
        status, answer = _post(url, {"dataframe_records": [{"video_path": str(searched["videos"][0])}]})
        refusal = answer["predictions"][0]["error"]  # advice this server can follow: it has no --allow-root
        assert status == 200 and f"set {ALLOWED_ROOTS_ENV}=DIR" in refusal and "--allow-root" not in refusal
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_a_bad_serve_flag_is_one_config_error(tmp_path):
    from conftest import run_cli

    result = run_cli(["serve", "--model", "models:/x/1", "--port", "0", "--body-timeout", "-1"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "(videoclf serve flags)" in result.stderr and "port" in result.stderr and "body_timeout_s" in result.stderr
