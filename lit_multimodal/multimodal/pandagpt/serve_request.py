"""Reading an OpenAI Chat Completions request into a PandaGPT chat turn (no HTTP here, so it is testable alone).

Content parts and the ImageBind modality each feeds:

- ``{"type": "text", "text": ...}``
- ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`` → image. A local path (or
  ``file://`` URL) only when the server runs with ``--allow_local_paths``; http(s) URLs are never fetched.
- ``{"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}}`` → audio.
- ``{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,..."}}`` → video (vLLM's extension).
- Extension for the other ImageBind modalities (not part of OpenAI's API):
  ``{"type": "imagebind", "imagebind": {"modality": "thermal" | "depth" | "imu" | ..., "data": "<base64>",
  "format": "png" | "npy" | "csv" | ...}}`` (``url`` instead of ``data`` takes a data URI or, when allowed, a path).

PandaGPT sums all inputs into the soft token of the **first** user message, so media are accepted there only.
Every problem raises :class:`RequestError` with the HTTP status, the OpenAI error type and the offending ``param``
(e.g. ``messages[0].content[1]``).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_multimodal.errors import UserError
from lit_multimodal.multimodal.pandagpt.chat import MODALITY_ORDER

__all__ = ["ChatRequest", "RequestError", "parse_request"]

DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)$", re.DOTALL)
SUFFIX_BY_MIME = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/x-msvideo": ".avi",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "application/x-npy": ".npy",
    "text/csv": ".csv",
}


class RequestError(UserError):
    """A request the server refuses; rendered as OpenAI's error JSON.

    Args:
        message: what is wrong, for the client.
        param: the request field at fault (``messages[1].content[0]``), or None.
        status: HTTP status.
        kind: OpenAI error ``type``.
        code: OpenAI error ``code``.
    """

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: int = 400,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.kind, self.code = message, param, status, kind, code

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    """A parsed request: conversation, media files written to ``folder`` and the decoding settings."""

    history: list[tuple[str, str]]
    message: str
    system: str | None
    files: dict[str, list[str]]
    stream: bool = False
    include_usage: bool = False
    max_new_tokens: int = 256
    do_sample: bool | None = None
    temperature: float = 1.0
    top_p: float = 0.01
    seed: int | None = 0
    stop: list[str] = field(default_factory=list)


def _number(body: dict, key: str, kind: type, low: float | None = None, high: float | None = None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise RequestError(f"'{key}' must be a {'number' if kind is float else 'integer'}, got {value!r}", key)
    if (low is not None and value < low) or (high is not None and value > high):
        raise RequestError(f"'{key}' must be in [{low}, {high}], got {value}", key)
    return kind(value)


def _decode_base64(data: Any, param: str) -> bytes:
    if not isinstance(data, str) or not data:
        raise RequestError("expected base64 data", param)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("the data is not valid base64", param) from None


class _Media:
    """Writes media parts into a folder and remembers which modality each feeds."""

    def __init__(self, folder: Path, allow_local_paths: bool) -> None:
        self.folder, self.allow_local_paths = folder, allow_local_paths
        self.files: dict[str, list[str]] = {}

    def _write(self, modality: str, payload: bytes, suffix: str) -> None:
        path = self.folder / f"part{sum(map(len, self.files.values()))}{suffix}"
        path.write_bytes(payload)
        self.files.setdefault(modality, []).append(str(path))

    def url(self, modality: str, url: Any, param: str) -> None:
        if not isinstance(url, str) or not url:
            raise RequestError("expected a url string", param)
        match = DATA_URI.match(url)
        if match:
            suffix = SUFFIX_BY_MIME.get((match["mime"] or "").lower(), "")
            self._write(modality, _decode_base64(match["data"], param), suffix)
            return
        if url.startswith(("http://", "https://")):
            raise RequestError("remote URLs are not fetched; send the file as a data: URI (base64)", param)
        if not self.allow_local_paths:
            raise RequestError(
                "local paths are refused; send a data: URI, or start the server with --allow_local_paths true", param
            )
        path = Path(url[len("file://") :] if url.startswith("file://") else url).expanduser()
        if not path.is_file():
            raise RequestError(f"{path} does not exist", param)
        self.files.setdefault(modality, []).append(str(path))

    def data(self, modality: str, data: Any, fmt: Any, param: str) -> None:
        if not isinstance(fmt, str) or not re.fullmatch(r"[A-Za-z0-9]{1,8}", fmt):
            raise RequestError("'format' must be a short file extension such as wav, mp3, png or npy", param)
        self._write(modality, _decode_base64(data, param), "." + fmt.lower())


def _content_text(content: Any, param: str, media: _Media | None) -> str:
    """The text of a message's content; media parts go to ``media`` (None: refused here)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestError("content must be a string or a list of parts", param)
    texts = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise RequestError("a text part needs a 'text' string", where)
            texts.append(part["text"])
            continue
        if kind not in ("image_url", "input_audio", "video_url", "imagebind"):
            raise RequestError(
                f"unsupported content part type {kind!r}; "
                "expected text, image_url, input_audio, video_url or imagebind",
                where,
            )
        if media is None:
            raise RequestError(
                "PandaGPT reads media in the first user message only (they are summed into one soft token)", where
            )
        spec = part.get(kind)
        if not isinstance(spec, dict):
            raise RequestError(f"a {kind} part needs a '{kind}' object", where)
        if kind == "image_url":
            media.url("image", spec.get("url"), where)
        elif kind == "video_url":
            media.url("video", spec.get("url"), where)
        elif kind == "input_audio":
            media.data("audio", spec.get("data"), spec.get("format"), where)
        else:
            modality = spec.get("modality")
            if modality not in MODALITY_ORDER:
                raise RequestError(f"imagebind.modality must be one of {list(MODALITY_ORDER)}, got {modality!r}", where)
            if spec.get("url") is not None:
                media.url(modality, spec["url"], where)
            else:
                media.data(modality, spec.get("data"), spec.get("format"), where)
    return "\n".join(texts)


def parse_request(body: Any, model_name: str, folder: Path, allow_local_paths: bool = False) -> ChatRequest:
    """Validates a Chat Completions body and writes its media into ``folder``.

    Args:
        body: the decoded JSON body.
        model_name: the served model id (another ``model`` gives 404).
        folder: an existing folder for the decoded media files.
        allow_local_paths: accept local file paths as ``image_url``/``video_url``/``imagebind.url``.

    Raises:
        RequestError: naming the field at fault.
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str):
        raise RequestError("'model' is required", "model")
    if model != model_name:
        raise RequestError(f"The model `{model}` does not exist; this server has `{model_name}`", "model", 404,
                           code="model_not_found")  # fmt: skip
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", "messages")
    if body.get("n") not in (None, 1):
        raise RequestError("only n = 1 is supported", "n")
    system = None
    turns: list[tuple[str, str]] = []
    media = _Media(folder, allow_local_paths)
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise RequestError("each message must be an object with 'role' and 'content'", param)
        role = message.get("role")
        if role in ("system", "developer"):
            if turns:
                raise RequestError("a system message must come before the conversation", f"{param}.role")
            system = _content_text(message.get("content"), f"{param}.content", None)
            continue
        if role not in ("user", "assistant"):
            raise RequestError(f"unsupported role {role!r}; expected system, user or assistant", f"{param}.role")
        expected = "user" if len(turns) % 2 == 0 else "assistant"
        if role != expected:
            raise RequestError(f"roles must alternate user/assistant starting with user; got {role}", f"{param}.role")
        first_user = role == "user" and not turns
        text = _content_text(message.get("content"), f"{param}.content", media if first_user else None)
        turns.append((role, text))
    if not turns or turns[-1][0] != "user":
        raise RequestError("the last message must come from the user", "messages")
    if not media.files:
        raise RequestError(
            "PandaGPT needs at least one image_url, input_audio, video_url or imagebind part in the first user message",
            "messages",
        )
    max_tokens = _number(body, "max_completion_tokens", int, 1, 8192)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", int, 1, 8192)
    temperature = _number(body, "temperature", float, 0.0, 2.0)
    top_p = _number(body, "top_p", float, 0.0, 1.0)
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
            raise RequestError("'stop' must be a string or a list of up to 4 strings", "stop")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", "stream")
    pairs = [(turns[i][1], turns[i + 1][1]) for i in range(0, len(turns) - 1, 2)]
    do_sample = None if temperature is None else temperature > 0
    return ChatRequest(
        history=pairs,
        message=turns[-1][1],
        system=system,
        files=media.files,
        stream=stream,
        include_usage=bool((options or {}).get("include_usage")),
        max_new_tokens=max_tokens or 256,
        do_sample=do_sample,
        temperature=temperature if temperature else 1.0,
        top_p=top_p if top_p else 0.01 if top_p is None else 1e-6,
        seed=0 if body.get("seed") is None else _number(body, "seed", int),
        stop=list(stop or []),
    )
