"""``lit-mm emergence``: the emergence quickstart on CPU, nothing downloaded.

1. Writes the offline multimodal digits (:mod:`~lit_multimodal.quickstart.emergence_data`): scans, names, DTMF
   tones, depth and thermal renders.
2. ``lit-mm bind``: the tiny ImageBind's image encoder to its frozen text encoder (the stand-in for OpenCLIP's
   image–text pre-training), exported.
3. ``lit-mm bind``: audio, depth and thermal encoders, each to the frozen image encoder of step 2; exported into
   one ImageBind state dict.
4. ``lit-mm bind-eval``: zero-shot accuracy of every modality against the digit names (the paper's emergent
   zero-shot classification).
5. ``lit-mm fit``: PandaGPT on the tiny LLaMA with **image–text instructions only**.
6. ``lit-mm evaluate``: held-out questions about images, audio, depth and thermal; the emergent-transfer table.

Every step is the public command with a config under ``configs/``; this function only chains them and fills in paths.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from lit_multimodal.files import write_json_atomic
from lit_multimodal.paths import cache_dir
from lit_multimodal.quickstart.emergence_data import DIGIT_WORDS, write_emergence_data

__all__ = ["BOUND_MODALITIES", "conclusion", "emergence"]

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BOUND_MODALITIES = ("audio", "depth", "thermal")


def _cli(args: list[str]) -> None:
    from lit_multimodal.cli import main

    main(args)


def _bind(config: Path, manifest: Path, checkpoint: str | None, run: Path, cache: Path, epochs: int | None) -> Path:
    shutil.rmtree(run, ignore_errors=True)  # a fresh run folder: last.ckpt is then this run's
    args = ["bind", "--config", str(config), "--data.init_args.manifest", str(manifest),
            "--data.init_args.cache_dir", str(cache), "--trainer.default_root_dir", str(run)]  # fmt: skip
    if checkpoint is not None:
        args += ["--model.init_args.checkpoint", checkpoint, "--data.init_args.checkpoint", checkpoint]
    if epochs is not None:
        args += ["--trainer.max_epochs", str(epochs), "--trainer.check_val_every_n_epoch", str(epochs)]
    _cli(args)
    return run / "checkpoints" / "last.ckpt"


def _imagebind_config() -> dict[str, Any]:
    loaded = yaml.safe_load((CONFIGS / "bind" / "quickstart_image.yaml").read_text())
    return dict(loaded["model"]["init_args"]["config"])


def _pandagpt_config(root: Path, data: Path, imagebind: Path, epochs: int | None) -> Path:
    config = yaml.safe_load((CONFIGS / "quickstart" / "emergence_pandagpt.yaml").read_text())
    config["trainer"]["default_root_dir"] = str(root / "pandagpt")
    if epochs is not None:
        config["trainer"]["max_epochs"] = epochs
    embedder = config["model"]["init_args"]["embedder"]["init_args"]
    embedder["checkpoint"] = str(imagebind)
    embedder["config"] = _imagebind_config()
    embedder["cache_dir"] = str(root / "embedding-cache")
    config["data"]["init_args"]["json_path"] = str(data / "instructions.json")
    config["data"]["init_args"]["image_root"] = str(data / "images")
    path = root / "pandagpt.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def emergence(
    out: str = "runs/emergence",
    data: str | None = None,
    seed: int = 0,
    image_epochs: int | None = None,
    bind_epochs: int | None = None,
    pandagpt_epochs: int | None = None,
) -> None:
    """Runs the whole emergence quickstart and prints the emergent-transfer table (CPU only, nothing downloaded).

    Args:
        out: run folder (bindings, exported ImageBind, PandaGPT run, evaluation JSON).
        data: folder of the generated data; default ``<cache>/quickstart/emergence-data``.
        seed: seed of the data (split, pairing, nuisances).
        image_epochs: epochs of the image–text binding (default: the config's).
        bind_epochs: epochs of each audio/depth/thermal binding (default: the configs').
        pandagpt_epochs: epochs of PandaGPT instruction tuning (default: the config's).

    Writes ``<out>/emergence.json`` (paths, ImageBind zero-shot accuracies, the PandaGPT table, the seconds of every
    step) and ends with the result in a few sentences and the commands to chat with the model.
    """
    root = Path(out).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[name] = round(now - clock, 1)
        clock = now
        print(f"[emergence] {name}: {times[name]:.1f} s", flush=True)

    folder = write_emergence_data(Path(data) if data else cache_dir() / "quickstart" / "emergence-data", seed=seed)
    lap("data")
    cache = root / "embedding-cache"
    image_ckpt = _bind(CONFIGS / "bind" / "quickstart_image.yaml", folder / "bind_image_text.jsonl", None,
                       root / "bind_image", cache, image_epochs)  # fmt: skip
    from lit_multimodal.multimodal.imagebind.bind.export import bind_export

    stage = root / "imagebind_image.pth"
    bind_export(str(image_ckpt), str(stage))
    lap("bind image to text")
    current = stage
    for modality in BOUND_MODALITIES:
        ckpt = _bind(CONFIGS / "bind" / f"quickstart_{modality}.yaml", folder / f"bind_{modality}_image.jsonl",
                     str(stage), root / f"bind_{modality}", cache, bind_epochs)  # fmt: skip
        target = root / f"imagebind_{modality}.pth"
        bind_export(str(ckpt), str(target), checkpoint=str(current))
        current = target
        lap(f"bind {modality} to image")
    final = root / "imagebind_bound.pth"
    current.replace(final)
    Path(str(current) + ".json").replace(str(final) + ".json")

    from lit_multimodal.multimodal.imagebind.bind.evaluate import bind_eval

    zeroshot = {}
    for modality in ("image", *BOUND_MODALITIES):
        result = bind_eval(str(folder / f"eval_{modality}.jsonl"), modality, "zeroshot", classes=list(DIGIT_WORDS),
                           templates="{}", checkpoint=str(final), preset="tiny", config=_imagebind_config(),
                           cache_dir=str(cache), out=str(root / "imagebind_eval"))  # fmt: skip
        zeroshot[modality] = {"accuracy": result["accuracy"], "chance": result["chance"]}
    lap("ImageBind zero-shot evaluation")

    pandagpt_yaml = _pandagpt_config(root, folder, final, pandagpt_epochs)
    _cli(["fit", "--config", str(pandagpt_yaml)])
    lap("PandaGPT on image-text instructions")

    from lit_multimodal.multimodal.pandagpt.evaluate import evaluate

    ckpt = root / "pandagpt" / "checkpoints" / "last.ckpt"
    summary = evaluate(str(folder / "qa.jsonl"), ckpt=str(ckpt), fit_config=str(pandagpt_yaml),
                       out=str(root / "evaluate"))  # fmt: skip
    lap("PandaGPT evaluation")
    result = {
        "imagebind": str(final),
        "pandagpt_config": str(pandagpt_yaml),
        "pandagpt_ckpt": str(ckpt),
        "imagebind_zeroshot": zeroshot,
        "pandagpt": summary["table"],
        "seconds": {**times, "total": round(sum(times.values()), 1)},
    }
    write_json_atomic(root / "emergence.json", result, sort_keys=False)
    answers = json.loads(Path(summary["json"]).read_text())["answers"]
    audio = [answer for answer in answers if answer["modality"] == "audio"]
    print(conclusion(result, next((a for a in audio if a["correct"]), audio[0])))


def conclusion(result: dict[str, Any], example: dict[str, Any]) -> str:
    """The run's outcome in English: what PandaGPT saw, how often it named the digit per modality, what to run next.

    Args:
        result: the content of ``emergence.json``.
        example: one answer record of ``lit-mm evaluate`` (an audio clip), quoted and offered to ``lit-mm chat``.
    """
    rows = {row["modality"]: row for row in result["pandagpt"]}

    def share(modality: str) -> str:
        row = rows[modality]
        return f"{100 * row['accuracy']:.0f} % ({row['accuracy'] / row['chance']:.1f}x chance)"

    seen = [m for m, row in rows.items() if row["status"] == "seen in training"]
    emergent = [m for m, row in rows.items() if row["status"] == "emergent"]
    chance = 100 * next(iter(rows.values()))["chance"]
    zeroshot = result["imagebind_zeroshot"]
    lines = [
        "",
        f'PandaGPT was trained on {" and ".join(seen)}-text instructions only. Asked "What digit is this?" about '
        f"held-out files, it named the right digit for {', '.join(f'{m} {share(m)}' for m in seen)}; for modalities "
        f"it never saw: {', '.join(f'{m} {share(m)}' for m in emergent)}. Guessing gives {chance:.0f} %.",
        "ImageBind's own zero-shot accuracy against the ten digit names: "
        + ", ".join(f"{m} {100 * v['accuracy']:.0f} %" for m, v in zeroshot.items())
        + f". {result['seconds']['total']:.0f} s in all.",
        f"For example, the DTMF tone of a {example['answer']} ({Path(example['file']).name}) got "
        f'"{example["prediction"]}"',
        "",
        "Ask it yourself:",
        f"  lit-mm chat --config {result['pandagpt_config']} --ckpt_path {result['pandagpt_ckpt']} \\",
        f"    --{example['modality']} {example['file']} --prompt '{example['question']}'",
        f"  lit-mm demo --config {result['pandagpt_config']} --ckpt_path {result['pandagpt_ckpt']}",
    ]
    return "\n".join(lines)
