"""The base-LLM folder a PandaGPT loads: a local Hugging Face model folder, checked before loading."""

from __future__ import annotations

from pathlib import Path

from lit_multimodal.references import require_resolved

__all__ = ["check_llm_folder"]


def check_llm_folder(path: str, key: str = "model.llm_path") -> str:
    """Returns ``path`` when it is a model folder with a ``config.json``.

    Raises:
        UnresolvedReference: ``path`` is a ``quickstart:`` reference nothing resolved
            (see :mod:`lit_multimodal.references`).
        FileNotFoundError: the folder does not exist or holds no ``config.json``; the message names it.
    """
    require_resolved(path, key)
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise FileNotFoundError(
            f"{key} {folder} {what}; it must be the local folder of the base LLM (config.json, tokenizer and "
            "weights), or quickstart:tiny-llama"
        )
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{key} {folder} has no config.json; it must be a Hugging Face model folder (config.json, tokenizer "
            "and weights)"
        )
    return str(folder)
