"""``lit-mm serve``: an OpenAI-compatible HTTP server for a PandaGPT model (FastAPI + uvicorn).

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions`` (streamed as Server-Sent
Events with ``"stream": true``, else one JSON), ``GET /health``. Requests carry text plus media content parts
(see :mod:`~lit_multimodal.multimodal.pandagpt.serve_request`); every response has
``metadata: {"emergent": bool, "modalities": [...]}`` (emergent: no image or video went in).

- Bad requests get OpenAI's error JSON (``{"error": {"message", "type", "param", "code"}}``) with a 4xx status;
  unexpected failures a 500 with the same shape; the server keeps serving.
- One request runs on the model at a time; up to ``max_queue`` more wait, beyond that the answer is 429.
- It binds 127.0.0.1 unless told otherwise; ``api_key`` makes it require ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the handlers' annotations from here
from jinja2 import TemplateError

from lit_multimodal.multimodal.imagebind.preprocess.errors import InputError
from lit_multimodal.multimodal.pandagpt.chat import needs_emergent_notice
from lit_multimodal.multimodal.pandagpt.demo_inputs import DemoLimits, check_input_file
from lit_multimodal.multimodal.pandagpt.serve_request import ChatRequest, RequestError, parse_request

log = logging.getLogger(__name__)

__all__ = ["build_app", "serve"]


class _Gate:
    """One request on the model at a time, at most ``max_queue`` waiting; more are refused (429)."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self.lock = threading.Lock()
        self.count_lock = threading.Lock()
        self.inside = 0

    def enter(self) -> None:
        with self.count_lock:
            if self.inside > self.max_queue:
                raise RequestError(
                    f"the server is busy ({self.inside} requests running or queued); retry later",
                    status=429, kind="rate_limit_error", code="queue_full",
                )  # fmt: skip
            self.inside += 1

    def leave(self) -> None:
        with self.count_lock:
            self.inside -= 1


def _stop_cut(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the first client stop string, and whether one was found."""
    hits = [text.find(stop) for stop in stops if stop in text]
    return (text[: min(hits)], True) if hits else (text, False)


def build_app(
    engine: Any,
    model_name: str = "pandagpt",
    allow_local_paths: bool = False,
    max_queue: int = 8,
    api_key: str | None = None,
    limits: DemoLimits | None = None,
    max_request_mb: float = 64.0,
) -> Any:
    """The FastAPI app around a :class:`~lit_multimodal.multimodal.pandagpt.chat.PandaGPTChat`.

    Args:
        engine: the chat engine (``encode_inputs``, ``generate``).
        model_name: the model id clients send (and ``/v1/models`` lists).
        allow_local_paths: accept local file paths in ``image_url`` and the other media URLs.
        max_queue: requests that may wait while one runs; more get 429.
        api_key: require ``Authorization: Bearer <api_key>`` (None: no check).
        limits: audio/video length limits of the inputs.
        max_request_mb: largest request body accepted (413 above).
    """
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.background import BackgroundTask
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="lit-mm PandaGPT", docs_url=None, redoc_url=None, openapi_url=None)
    gate = _Gate(max_queue)
    limits = limits or DemoLimits()
    created = int(time.time())

    def error_response(err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return error_response(RequestError(str(err.detail), status=err.status_code, kind=kind))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, err: Exception) -> JSONResponse:
        log.exception("request failed")
        return error_response(RequestError(f"internal error: {type(err).__name__}: {err}", status=500,
                                           kind="server_error"))  # fmt: skip

    @app.middleware("http")
    async def _auth_and_size(request: Request, call_next):
        if api_key is not None and request.url.path.startswith("/v1/"):
            if request.headers.get("authorization") != f"Bearer {api_key}":
                return error_response(RequestError("invalid API key", status=401, kind="authentication_error",
                                                   code="invalid_api_key"))  # fmt: skip
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_request_mb * 2**20:
            return error_response(RequestError(f"request body over {max_request_mb:g} MB", status=413))
        return await call_next(request)

    def model_card() -> dict[str, Any]:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "lit-mm"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != model_name:
            raise RequestError(f"The model `{model_id}` does not exist", "model", 404, code="model_not_found")
        return model_card()

    def encode(req: ChatRequest) -> tuple[Any, list[str]]:
        for name, paths in req.files.items():
            for index, path in enumerate(paths):
                check_input_file(name, path, limits, name=f"{name} input {index}")
        with gate.lock:
            token, _ = engine.encode_inputs(req.files)
        return token, list(req.files)

    def pieces(req: ChatRequest, token: Any) -> Iterator[str]:
        return engine.generate(
            req.history, req.message, token, max_new_tokens=req.max_new_tokens, top_p=req.top_p,
            temperature=req.temperature, do_sample=req.do_sample, seed=req.seed, system=req.system,
        )  # fmt: skip

    def run_whole(req: ChatRequest, token: Any, modalities: list[str]) -> dict[str, Any]:
        with gate.lock:
            answer, stopped = _stop_cut("".join(pieces(req, token)), req.stop)
            return {
                "answer": answer,
                "finish_reason": "stop" if stopped else getattr(engine, "finish_reason", "stop"),
                "modalities": modalities,
                "prompt_tokens": int(getattr(engine, "prompt_tokens", 0)),
                "completion_tokens": int(getattr(engine, "generated_tokens", 0)),
            }

    def metadata(modalities: list[str]) -> dict[str, Any]:
        return {"emergent": needs_emergent_notice(modalities), "modalities": modalities}

    def usage(prompt: int, completion: int) -> dict[str, int]:
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError("the request body is not valid JSON") from None
        with tempfile.TemporaryDirectory(prefix="lit-mm-serve-") as folder:
            req = parse_request(body, model_name, Path(folder), allow_local_paths)
            gate.enter()
            try:
                token, modalities = await run_in_threadpool(encode, req)
            except InputError as err:  # bad media: name the part, not the temporary file
                gate.leave()
                raise RequestError(str(err).replace(folder + "/", ""), "messages") from None
            except BaseException:
                gate.leave()
                raise
        try:  # render the prompt once up front: a template that refuses the messages is the client's error
            conversation = getattr(engine, "conversation", None)
            if conversation is not None:
                conversation.inference_ids(req.history, req.message, req.system)
        except (ValueError, TemplateError) as err:
            gate.leave()
            raise RequestError(f"the model's prompt format refuses these messages: {err}", "messages") from None
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        stamp = int(time.time())
        if not req.stream:
            try:
                result = await run_in_threadpool(run_whole, req, token, modalities)
            finally:
                gate.leave()
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": stamp,
                "model": model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result["answer"], "refusal": None},
                        "finish_reason": result["finish_reason"],
                        "logprobs": None,
                    }
                ],
                "usage": usage(result["prompt_tokens"], result["completion_tokens"]),
                "metadata": metadata(result["modalities"]),
            }

        def chunk(delta: dict[str, Any], finish: str | None = None, extra: dict | None = None) -> str:
            payload = {
                "id": completion_id, "object": "chat.completion.chunk", "created": stamp, "model": model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **(extra or {}),
            }  # fmt: skip
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        released = threading.Event()

        def release() -> None:  # once, from the stream's end or, if it never ran (client gone), afterwards
            if not released.is_set():
                released.set()
                gate.leave()

        def events() -> Iterator[str]:
            try:
                with gate.lock:
                    yield chunk({"role": "assistant", "content": ""}, extra={"metadata": metadata(modalities)})
                    text, sent, stopped = "", 0, False
                    hold = max((len(stop) for stop in req.stop), default=1) - 1
                    for piece in pieces(req, token):
                        text += piece
                        cut, stopped = _stop_cut(text, req.stop)
                        safe = cut if stopped else cut[: max(sent, len(cut) - hold)]
                        if len(safe) > sent:
                            yield chunk({"content": safe[sent:]})
                            sent = len(safe)
                        if stopped:
                            break
                    if not stopped and len(text) > sent:
                        yield chunk({"content": text[sent:]})
                    finish = "stop" if stopped else getattr(engine, "finish_reason", "stop")
                    yield chunk({}, finish, extra={"metadata": metadata(modalities)})
                    if req.include_usage:
                        final = usage(
                            int(getattr(engine, "prompt_tokens", 0)), int(getattr(engine, "generated_tokens", 0))
                        )
                        payload = {"id": completion_id, "object": "chat.completion.chunk", "created": stamp,
                                   "model": model_name, "choices": [], "usage": final}  # fmt: skip
                        yield f"data: {json.dumps(payload)}\n\n"
            except Exception as err:  # the status line is sent already: report in the stream, as OpenAI does
                log.exception("streamed request failed")
                error = RequestError(f"internal error: {type(err).__name__}: {err}", status=500, kind="server_error")
                yield f"data: {json.dumps(error.body())}\n\n"
            finally:
                release()
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
            background=BackgroundTask(release),
        )  # fmt: skip

    return app


def serve(
    fit_config: str | list[str],
    ckpt: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str = "pandagpt",
    allow_local_paths: bool = False,
    max_queue: int = 8,
    api_key: str | None = None,
    imagebind_checkpoint: str | None = None,
    llm_path: str | None = None,
    dtype: str | None = None,
    device: str = "cpu",
    max_audio_seconds: float = 600.0,
    max_video_seconds: float = 300.0,
) -> None:
    """Serves a PandaGPT model over an OpenAI-compatible API until interrupted.

    ``POST /v1/chat/completions`` takes ``messages`` whose first user message carries ``image_url`` (data: URI),
    ``input_audio`` (base64 wav/mp3), ``video_url`` or ``imagebind`` (thermal, depth, IMU) parts; use it with any
    OpenAI client: ``OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="none")``.

    Args:
        fit_config: the ``lit-mm fit`` config of the model: a YAML path or the fit arguments; on the command line
            ``--config a.yaml [--config b.yaml] [--model.init_args.x y]``, read exactly as ``lit-mm fit`` reads them.
        ckpt: delta ``pytorch_model.pt``, ``last.ckpt`` or DeepSpeed folder; leave out for the untrained LoRA and
            projection.
        host: address to bind (127.0.0.1: this machine only; ``0.0.0.0`` exposes it to the network).
        port: port to bind.
        model_name: the model id clients must send.
        allow_local_paths: accept local file paths as media URLs (only for trusted clients on this machine).
        max_queue: requests that may wait while one runs (more get 429).
        api_key: require this bearer token.
        imagebind_checkpoint: ImageBind weights; default: the config's embedder checkpoint.
        llm_path: base LLM folder; overrides the config's.
        dtype: LLM dtype override.
        device: ``cpu`` or ``cuda``.
        max_audio_seconds: longest audio accepted.
        max_video_seconds: longest video accepted.
    """
    import uvicorn

    from lit_multimodal.multimodal.pandagpt.chat import PandaGPTChat

    engine = PandaGPTChat.from_files(ckpt, fit_config, imagebind_checkpoint, llm_path, dtype, device)
    limits = DemoLimits(max_audio_seconds=max_audio_seconds, max_video_seconds=max_video_seconds)
    app = build_app(engine, model_name, allow_local_paths, max_queue, api_key, limits)
    print(f"PandaGPT OpenAI-compatible API on http://{host}:{port}/v1 (model {model_name!r})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
