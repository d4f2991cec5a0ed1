"""The quickstart's pre-trained backbone, built once on digits 0–4 and cached.

A randomly initialised frozen ViT teaches nothing about prompt tuning (every frozen method then sits near
chance while full fine-tuning wins), so the quickstart first fully trains its small ViT on digits 0–4
and saves it as safetensors. The transfer task is digits 5–9, so the frozen
methods show real transfer from a backbone that never saw those classes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from lit_multimodal.data.transforms import build_transform
from lit_multimodal.files import atomic_path
from lit_multimodal.paths import cache_dir
from lit_multimodal.progress import progress
from lit_multimodal.quickstart.digits import SOURCE_DIGITS, digit_image, load_digits_arrays
from lit_multimodal.vision.backbones import BackboneConfig, build_vit
from lit_multimodal.vision.classifier import make_head

log = logging.getLogger(__name__)

PRETRAIN_EPOCHS = 30
PRETRAIN_LR = 1e-3
PRETRAIN_SEED = 0


def _cache_path(config: BackboneConfig) -> Path:
    geometry = {k: v for k, v in asdict(config).items() if k in ("arch", "img_size", "pooling", "overrides")}
    geometry["recipe"] = [PRETRAIN_EPOCHS, PRETRAIN_LR, PRETRAIN_SEED, SOURCE_DIGITS]
    key = hashlib.sha256(json.dumps(geometry, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "quickstart" / f"backbone-digits0-4-{key}.safetensors"


def _source_tensors(img_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_digits_arrays()
    transform = build_transform(train=False, mode="resize", img_size=img_size, resize_size=img_size)
    keep = [i for i, y in enumerate(labels) if int(y) in SOURCE_DIGITS]
    x = torch.stack([transform(digit_image(images[i])) for i in keep])
    y = torch.as_tensor([SOURCE_DIGITS.index(int(labels[i])) for i in keep])
    return x, y


def pretrain_on_source_digits(config: BackboneConfig) -> dict[str, torch.Tensor]:
    """Fully trains the configured ViT on digits 0–4 and returns its (headless) state dict."""
    generator = torch.Generator().manual_seed(PRETRAIN_SEED)
    with torch.random.fork_rng():
        torch.manual_seed(PRETRAIN_SEED)
        vit = build_vit(replace(config, checkpoint=None, dropout=0.0, drop_path=0.0))
        head = make_head(vit.num_features, len(SOURCE_DIGITS))
    x, y = _source_tensors(config.img_size)
    params = list(vit.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=PRETRAIN_LR, weight_decay=0.05)
    steps_per_epoch = (len(x) + 63) // 64
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=PRETRAIN_LR, total_steps=PRETRAIN_EPOCHS * steps_per_epoch
    )
    vit.train()
    with progress("pre-training the quickstart backbone on digits 0-4 (once)", PRETRAIN_EPOCHS) as bar:
        for _ in range(PRETRAIN_EPOCHS):
            correct = 0
            for idx in torch.randperm(len(x), generator=generator).split(64):
                logits = head(vit.forward_head(vit.forward_features(x[idx]), pre_logits=True))
                loss = torch.nn.functional.cross_entropy(logits, y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                correct += int((logits.argmax(-1) == y[idx]).sum())
            bar.advance(description=f"pre-training on digits 0-4 (train acc {correct / len(x):.1%})")
    return {k: v.detach().contiguous() for k, v in vit.state_dict().items()}


def ensure_quickstart_backbone(config: BackboneConfig) -> Path:
    """Returns the cached quickstart backbone for this geometry, pre-training it on first use."""
    path = _cache_path(config)
    if path.is_file():
        return path
    log.info("building the quickstart backbone once: %s", path)
    state = pretrain_on_source_digits(config)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"source": "lit-mm quickstart, digits 0-4"})
    return path
