"""``videoclf serve``: the registered model behind MLflow's scoring protocol, with limits and a trust boundary.

Same routes and request formats as ``mlflow models serve`` (``/invocations`` with
``dataframe_split`` / ``dataframe_records`` / ``instances`` / ``inputs`` JSON or CSV,
``/ping``, ``/health``, ``/version``); MLflow parses the request and serialises the
answer. What this adds, for clients on other machines:

- **bounded work**: a request may carry at most ``max_videos`` videos and
  ``max_request_mb`` of body (413 otherwise, before any decoding); one prediction
  runs at a time per worker, at most ``max_waiting`` more wait (503 beyond);
  a request's videos not started ``timeout_s`` after it arrived come back with
  an error, so work cannot pile up behind a slow request; the body itself must
  arrive within ``body_timeout_s`` (408 otherwise), so a stalled upload holds
  nothing for long, and a client gone mid-upload is one log line;
- **a trust boundary**: paths are read only inside ``--allow-root`` folders
  (symlinks resolved; none given: bytes only), see ``videoclf.registered.requests``;
- **strict JSON**: ``null``, never ``NaN``; every answer is a JSON object,
  errors included (MLflow's plain-text 415 too); a malformed request is a 400
  that names the expected columns.

Workers are uvicorn processes, each loading the model once; SIGTERM stops
accepting, gives running requests ``shutdown_s`` to finish, cuts the rest
(each answered 503 where it still can be) and exits, without tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from fastapi import FastAPI, Request  # FastAPI reads the handlers' annotations: Request must be global
from fastapi.responses import Response
from mlflow.exceptions import MlflowException
from starlette.requests import ClientDisconnect

from videoclf.config import ServingConfig
from videoclf.registered.requests import ALLOWED_ROOTS_ENV, REQUEST_DEADLINE, RequestError
from videoclf.registered.wire import BYTES_COLUMN, INPUT_COLUMNS, PATH_COLUMN, STRIDE_COLUMN, WINDOW_COLUMN

MODEL_ENV = "VIDEOCLF_SERVE_MODEL"  # local path of the downloaded model, for each worker process
LIMITS_ENV = "VIDEOCLF_SERVE_LIMITS"
LOG = logging.getLogger("videoclf.serve")
NUMBER_OR_NULL = "must be a number of seconds or null"  # a window column's JSON value
DRAIN_FACTOR = 4  # bodies up to this many times the limit are read (and dropped) before answering 413
JSON_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
EXPECTED = (f"Expected JSON like {{\"dataframe_records\": [{{\"{BYTES_COLUMN}\": \"<base64 of the file>\"}}]}} or "
            f"{{\"dataframe_split\": {{\"columns\": [\"{PATH_COLUMN}\"], \"data\": [[\"/allowed/root/v.avi\"]]}}}}; "
            f"columns: {', '.join(INPUT_COLUMNS)} (each row needs {PATH_COLUMN} or {BYTES_COLUMN})")


class Refused(Exception):
    """A request refused as a whole, with its HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class _TooManyVideos(MlflowException):
    """Raised inside MLflow's ``invocations`` (which passes MlflowExceptions through) when the parsed request
    holds more rows than allowed: formats we do not pre-check (Parquet) are bounded too."""

    def __init__(self, refused: Refused):
        super().__init__(refused.message)
        self.refused = refused


def request_shape(body: bytes, content_type: str) -> tuple[list[str], int] | None:
    """The columns and row count of a JSON or CSV request, read before MLflow parses it (None: not checked
    here, e.g. Parquet). Raises Refused (400) for a body that is not what the scoring protocol expects."""
    mime = content_type.split(";")[0].strip().lower()
    if mime == "text/csv":
        lines = body.decode("utf-8", errors="replace").splitlines()
        header = lines[0].split(",") if lines else []
        return [c.strip().strip('"') for c in header], max(len(lines) - 1, 0)
    if mime != "application/json":
        return None
    try:
        payload = json.loads(body, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"The request body is not valid JSON ({exc}). {EXPECTED}") from None
    keys = [k for k in JSON_FORMATS if isinstance(payload, dict) and k in payload]
    if len(keys) != 1:
        raise Refused(400, f"Expected exactly one of the keys {', '.join(JSON_FORMATS)}. Received: "
                           f"{sorted(payload) if isinstance(payload, dict) else type(payload).__name__}. {EXPECTED}")
    data = payload[keys[0]]
    if keys[0] == "dataframe_split" and isinstance(data, dict):
        rows = data.get("data") or []
        columns, records = list(data.get("columns") or []), [dict(zip(data.get("columns") or [], r)) for r in rows]
    elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
        records = data
        columns = list(dict.fromkeys(k for r in records for k in r))
    elif isinstance(data, dict):
        columns = list(data)
        lengths = [len(v) if isinstance(v, list) else 1 for v in data.values()]
        records = [{k: (v[i] if isinstance(v, list) else v) for k, v in data.items()} for i in range(max(lengths, default=0))]
    else:
        raise Refused(400, f"'{keys[0]}' holds no named columns. {EXPECTED}")
    if BYTES_COLUMN in columns and any(not isinstance(r.get(BYTES_COLUMN), str) for r in records):
        # MLflow decodes base64 column by column: a null in it fails the whole request deep inside MLflow.
        raise Refused(400, f"'{BYTES_COLUMN}' must hold base64 text in every row of a request; send rows by path "
                           f"and rows by bytes in separate requests. {EXPECTED}")
    for column in (WINDOW_COLUMN, STRIDE_COLUMN):  # MLflow would turn "NaN" or "2" into numbers without a word
        for index, record in enumerate(records):
            value = record.get(column)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise Refused(400, f"row {index}: {column} {NUMBER_OR_NULL}. Received: {value!r}")
    return [str(c) for c in columns], len(records)


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value (use null)")


def check_shape(columns: list[str], rows: int, limits: ServingConfig) -> None:
    unknown = [c for c in columns if c not in INPUT_COLUMNS]
    if unknown or not ({PATH_COLUMN, BYTES_COLUMN} & set(columns)):
        raise Refused(400, f"Unknown or missing columns: received {columns}. {EXPECTED}")
    check_rows(rows, limits)


def check_rows(rows: int, limits: ServingConfig) -> None:
    if rows > limits.max_videos:
        raise Refused(413, f"{rows} videos in one request; this server takes at most {limits.max_videos} "
                           "(split the request, or start the server with a higher --max-videos)")


class _BoundedModel:
    """What MLflow's ``invocations`` calls: the model, with the request's row limit checked first."""

    def __init__(self, model, limits: ServingConfig):
        self.model, self.limits, self.metadata = model, limits, model.metadata

    def predict(self, data, params=None):
        try:
            check_rows(len(data), self.limits)
        except Refused as refused:
            raise _TooManyVideos(refused) from None
        return self.model.predict(data, params=params)


def _json_response(status: int, message: str, headers: dict[str, str] | None = None):
    error_code = {400: "BAD_REQUEST", 408: "REQUEST_TIMEOUT", 413: "REQUEST_LIMIT_EXCEEDED",
                  415: "UNSUPPORTED_MEDIA_TYPE", 503: "TEMPORARILY_UNAVAILABLE",
                  504: "DEADLINE_EXCEEDED"}.get(status, "INTERNAL_ERROR")
    return Response(json.dumps({"error_code": error_code, "message": message}, allow_nan=False), status_code=status,
                    media_type="application/json", headers=headers)


def create_app(model, limits: ServingConfig):
    """The FastAPI app serving ``model`` (a loaded pyfunc) under ``limits``."""
    from mlflow.pyfunc import scoring_server
    from mlflow.version import VERSION

    app = FastAPI(title="videoclf")
    input_schema = model.metadata.get_input_schema()
    bounded = _BoundedModel(model, limits)
    gate = asyncio.Semaphore(1)  # one prediction at a time: it already uses every core
    state = {"waiting": 0}

    @app.get("/ping")
    @app.get("/health")
    async def ping():
        return Response("\n", status_code=200, media_type="application/json")

    @app.get("/version")
    async def version():
        return Response(VERSION, status_code=200, media_type="application/json")

    async def _body(request: Request) -> bytes:
        """The body, at most ``max_request_bytes``. A somewhat larger one is read and dropped before the 413, so
        the client can read the answer (not a broken pipe); a far larger one is refused at once."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > DRAIN_FACTOR * limits.max_request_bytes:
            raise Refused(413, _too_big(int(declared), limits))
        chunks, size = [], 0
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                async for chunk in request.stream():  # also bounds bodies sent without a length
                    size += len(chunk)
                    if size > DRAIN_FACTOR * limits.max_request_bytes:
                        break
                    if size <= limits.max_request_bytes:
                        chunks.append(chunk)
        except TimeoutError:
            raise Refused(408, f"the request body did not arrive within {limits.body_timeout_s:g} s ({size} bytes "
                               "came); send it faster, or start the server with a higher --body-timeout",
                          {"Connection": "close"}) from None
        if size > limits.max_request_bytes:
            raise Refused(413, _too_big(size, limits))
        return b"".join(chunks)

    @app.post("/invocations")
    async def invocations(request: Request):
        arrived = time.monotonic()
        content_type = request.headers.get("content-type") or "application/json"
        try:
            body = await _body(request)
            shape = request_shape(body, content_type)
            if shape is not None:
                check_shape(*shape, limits)
            if state["waiting"] >= limits.max_waiting and gate.locked():
                raise Refused(503, f"busy: {state['waiting']} requests are waiting already; retry shortly",
                              {"Retry-After": "5"})
            state["waiting"] += 1
            try:
                await gate.acquire()
            finally:
                state["waiting"] -= 1
            try:
                if time.monotonic() - arrived > limits.timeout_s:
                    raise Refused(504, f"waited longer than the request time limit ({limits.timeout_s:.0f} s) for "
                                       "earlier requests; retry shortly", {"Retry-After": "5"})
                REQUEST_DEADLINE.set(arrived + limits.timeout_s)  # followed into the prediction thread
                result = await asyncio.to_thread(scoring_server.invocations, body, content_type, bounded,
                                                 input_schema)
            finally:
                gate.release()
        except Refused as refused:
            return _json_response(refused.status, refused.message, refused.headers)
        except _TooManyVideos as exc:
            return _json_response(exc.refused.status, exc.refused.message)
        except MlflowException as exc:
            return _json_response(exc.get_http_status_code(), _client_message(exc))
        except ClientDisconnect:
            LOG.warning("a client (%s) disconnected before its request body arrived; nothing done",
                        request.client.host if request.client else "unknown")
            return Response(status_code=400)  # nobody reads it
        except asyncio.CancelledError:  # the server's shutdown time is over: answer if the client still listens
            LOG.warning("shutting down: a request still running was cut")
            return _json_response(503, "the server is shutting down; retry on another instance or shortly",
                                  {"Retry-After": "5", "Connection": "close"})
        if result.status >= 400 and result.mimetype != "application/json":  # e.g. MLflow's plain-text 415
            return _json_response(result.status, str(result.response)[:2000])
        return Response(result.response, status_code=result.status, media_type=result.mimetype)

    return app


def _too_big(size: int, limits: ServingConfig) -> str:
    return (f"request body of {size / 2**20:.1f} MiB; this server takes at most "
            f"{limits.max_request_bytes / 2**20:.1f} MiB (send fewer or smaller videos per request, or start the "
            "server with a higher --max-request-mb)")


def _client_message(exc: MlflowException) -> str:
    """MLflow's message without a stack trace or the request's data echoed back (megabytes of base64)."""
    message = exc.message
    if isinstance(exc, RequestError):  # what the model refused, its message prefixed by MLflow with the data
        return f"{message.split(chr(10) + 'Error: ', 1)[-1]} {EXPECTED}"[:2000]
    if message.startswith("Failed to predict data") and "\nError: " in message:
        message = message.split("\nError: ", 1)[1]
    return message[:2000]


def app_from_environment():
    """uvicorn's factory in each worker process: the model and limits come from the parent's environment."""
    from videoclf.registered.use import load_video_model

    logging.basicConfig(format="%(levelname)s: %(message)s")  # our one-line warnings, in every worker process
    model = load_video_model(os.environ[MODEL_ENV])
    return create_app(model, ServingConfig.model_validate_json(os.environ[LIMITS_ENV]))


def serve(model_uri: str, serving: ServingConfig, config=None) -> None:
    """Downloads the model once, then runs ``serving.workers`` uvicorn processes on ``host:port`` until SIGTERM or
    SIGINT (then running requests get ``serving.shutdown_s`` seconds)."""
    import uvicorn
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT

    from videoclf.errors import VideoclfError
    from videoclf.registered.integrity import check_model_folder
    from videoclf.registered.use import fetch_video_model, say_which_model

    roots = []
    for root in serving.allowed_roots:
        if not Path(root).is_dir():
            raise VideoclfError(f"--allow-root {root}: not a folder")
        roots.append(str(Path(root).resolve()))
    local = fetch_video_model(model_uri)  # once, here: every worker loads these files
    settings = check_model_folder(local)  # a damaged model: one error here, before any worker starts
    say_which_model(model_uri, settings.classes, config)
    os.environ[MODEL_ENV] = local
    os.environ[LIMITS_ENV] = serving.model_dump_json()  # each worker process reads the same settings
    os.environ[ALLOWED_ROOTS_ENV] = os.pathsep.join(roots)
    os.environ[_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name] = "true"
    reads = f"paths under {', '.join(roots)} and bytes" if roots else "video bytes only (no --allow-root)"
    print(f"serving {model_uri} on http://{serving.host}:{serving.port}/invocations with {serving.workers} "
          f"worker(s); reads {reads}; limits: {serving.max_videos} videos and {serving.max_request_mb:g} MiB per "
          f"request, {serving.timeout_s:g} s per request, {serving.body_timeout_s:g} s for its body, "
          f"{serving.max_waiting} waiting per worker", flush=True)
    uvicorn.run("videoclf.registered.server:app_from_environment", factory=True, host=serving.host, port=serving.port,
                workers=serving.workers, timeout_graceful_shutdown=serving.shutdown_s, log_level="warning")
