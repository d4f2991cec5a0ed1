"""``BindModule``: trains one ImageBind encoder against frozen anchor embeddings with ImageBind's InfoNCE.

The module holds only the bound modality's preprocessor, trunk, head and postprocessor, under their official
names (``imagebind.modality_trunks.audio...``), so exporting is renaming nothing: the trained tensors (LoRA merged)
replace the same keys of the base state dict (see ``export.py``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from lit_multimodal.training.module_base import LitMMModule

from ..checkpoint import build_imagebind
from ..config import MODALITIES, ImageBindConfig
from ..encode import RANDOM_INIT_SEED, loader_key
from ..model import ImageBindModel
from .loss import PAPER_TEMPERATURE, infonce_loss, retrieval_recalls

__all__ = ["BindModule", "base_imagebind", "strip_to_modality"]

Tuning = Literal["full", "lora", "head"]
_PARTS = ("modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors")


def base_imagebind(preset: str, checkpoint: str | None, config: dict[str, Any] | None) -> ImageBindModel:
    """The frozen ImageBind the anchor encoder uses: the checkpoint, or the same fixed-seed random weights."""
    factory = {"huge": ImageBindConfig.huge, "tiny": ImageBindConfig.tiny}[preset]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)  # as ImageBindEncoder without a checkpoint
        return build_imagebind(factory(**(config or {})), checkpoint)


def strip_to_modality(model: ImageBindModel, modality: str) -> ImageBindModel:
    """Removes every other modality's modules in place (their weights are never trained here)."""
    for part in _PARTS:
        modules = getattr(model, part)
        for other in [m for m in modules if m != modality]:
            del modules[other]
    return model


class BindModule(LitMMModule):
    """Binds one modality's encoder to a frozen anchor modality (ImageBind's training, paper §3).

    Loss: ``L_{A,M} + L_{M,A}``, symmetric InfoNCE with in-batch negatives and a fixed temperature (paper Eq. 1,
    Table 9: audio 0.05, depth 0.2, thermal 0.1, IMU 0.2). Validation logs retrieval R@1/5/10 in both directions
    on the held-out pairs (``val/R@1_m2a`` …).

    Args:
        modality: the modality being bound (``audio``, ``depth``, ``thermal``, ``imu``, ``image``/``vision``,
            ``text``); must match the data's.
        preset: ImageBind architecture (``huge`` or ``tiny``).
        checkpoint: base ImageBind weights (``imagebind_huge.pth`` or an earlier ``lit-mm bind-export``); None: the
            fixed-seed random weights that the anchor encoder also uses.
        config: preset overrides, e.g. ``{"audio_embed_dim": 256, "audio_num_blocks": 4}`` for a new encoder size.
        reinit: start the bound encoder from fresh random weights (seed ``init_seed``) instead of the base's: a new
            encoder, of any size the config gives it.
        init_seed: seed of that initialisation.
        tuning: ``full`` (every encoder weight), ``lora`` (peft LoRA on the trunk's linear layers; head trained) or
            ``head`` (the head's projection only).
        lora_r: LoRA rank.
        lora_alpha: LoRA alpha.
        lora_dropout: LoRA dropout.
        lora_targets: trunk layers LoRA adapts (``out_proj``, ``fc1``, ``fc2``).
        temperature: fixed τ; None: the paper's value for the modality.
        mask_same_label: drop same-label pairs from the negatives (for class-paired data).
        gather_negatives: on several devices, all-gather the embeddings so that every query sees the whole global
            batch as negatives (the paper's batch sizes are global); the gradient then equals that of one device
            with the global batch. False: each device contrasts its own batch only.
        lr: peak learning rate (AdamW, betas 0.9/0.95 as the paper).
        weight_decay: AdamW weight decay.
        warmup_fraction: linear warmup over this fraction of the steps, then cosine decay to 0.
        retrieval_ks: the k of the logged recalls.
    """

    hparam_metrics = ("train/loss", "val/loss")
    lr_log_interval = "step"
    backbone_label = "encoder"

    def __init__(
        self,
        modality: Literal["audio", "depth", "thermal", "imu", "image", "vision", "text"] = "audio",
        preset: Literal["huge", "tiny"] = "huge",
        checkpoint: str | None = None,
        config: dict[str, Any] | None = None,
        reinit: bool = False,
        init_seed: int = 0,
        tuning: Tuning = "full",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.0,
        lora_targets: tuple[str, ...] = ("out_proj", "fc1", "fc2"),
        temperature: float | None = None,
        mask_same_label: bool = False,
        gather_negatives: bool = True,
        lr: float = 1.6e-3,
        weight_decay: float = 0.2,
        warmup_fraction: float = 0.05,
        retrieval_ks: tuple[int, ...] = (1, 5, 10),
    ) -> None:
        super().__init__()
        modality = "vision" if modality == "image" else modality
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        if tuning not in ("full", "lora", "head"):
            raise ValueError(f"tuning must be full, lora or head, got {tuning!r}")
        self.save_hyperparameters(logger=False)
        self.hparams.update(lora_targets=list(lora_targets), retrieval_ks=list(retrieval_ks), modality=modality)
        self.modality = modality
        self.temperature = float(temperature if temperature is not None else PAPER_TEMPERATURE[modality])
        self.imagebind = strip_to_modality(base_imagebind(preset, checkpoint, config), modality)
        if reinit:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed)
                fresh = strip_to_modality(ImageBindModel(self.imagebind.config), modality)
            self.imagebind.load_state_dict(fresh.state_dict())
        self.imagebind.train()
        self._set_trainable(tuning)
        self.strict_loading = False
        self._val: list[dict[str, Tensor]] = []

    # -- parameters -------------------------------------------------------------------------------
    def _set_trainable(self, tuning: Tuning) -> None:
        ib = self.imagebind
        ib.requires_grad_(False)
        head = ib.modality_heads[self.modality]
        if tuning == "full":
            for part in _PARTS:
                getattr(ib, part)[self.modality].requires_grad_(True)
        elif tuning == "head":
            (head.proj[-1] if self.modality == "text" else head[-1]).requires_grad_(True)
        else:
            from peft import LoraConfig, inject_adapter_in_model

            config = LoraConfig(
                r=self.hparams.lora_r,
                lora_alpha=self.hparams.lora_alpha,
                lora_dropout=self.hparams.lora_dropout,
                target_modules=list(self.hparams.lora_targets),
                bias="none",
            )
            inject_adapter_in_model(config, ib.modality_trunks[self.modality])
            head.requires_grad_(True)
        # Logit scales are fixed buffers (the text one a parameter): never trained here.
        for param in ib.modality_postprocessors.parameters():
            param.requires_grad_(False)
        if not any(p.requires_grad for p in self.parameters()):
            raise RuntimeError(f"nothing to train for modality {self.modality} with tuning {tuning}")

    def checkpoint_description(self) -> str:
        """``BindModule(<modality>, tuning=<tuning>)``."""
        return f"BindModule({self.modality}, tuning={self.hparams.tuning})"

    # -- steps ------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Embeddings ``(B, D)`` of the bound modality (official encode: clips averaged, postprocessed)."""
        return self.imagebind.encode(self.modality, x)

    def _distributed(self) -> bool:
        return self._trainer is not None and self._trainer.world_size > 1

    def _step(self, batch: dict[str, Tensor], gather: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        emb = local = self(batch["input"])
        anchor = batch["anchor"]
        labels = batch["label"] if self.hparams.mask_same_label else None
        if gather:
            # sync_grads: the gather's backward sums every device's gradient for this device's embeddings; with
            # DDP's averaging that is exactly the gradient of the loss over the global batch on one device.
            emb = self.all_gather(emb, sync_grads=True).flatten(0, 1)
            anchor = self.all_gather(anchor).flatten(0, 1)
            labels = self.all_gather(labels).flatten(0, 1) if labels is not None else None
        loss, m2a, a2m = infonce_loss(emb, anchor, self.temperature, labels)
        return loss, m2a, a2m, local

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """InfoNCE on one batch of pairs (the global batch when ``gather_negatives`` and several devices)."""
        gather = bool(self.hparams.gather_negatives) and self._distributed()
        loss, m2a, a2m, _ = self._step(batch, gather=gather)
        size = len(batch["input"]) * (self._trainer.world_size if gather else 1)
        self.log("train/negatives", float(size - 1), on_step=True, on_epoch=False, batch_size=size)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        self.log("train/loss_m2a", m2a, on_epoch=True, batch_size=size)
        self.log("train/loss_a2m", a2m, on_epoch=True, batch_size=size)
        return loss

    def on_validation_epoch_start(self) -> None:
        """Starts collecting held-out embeddings."""
        self._val = []

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Loss per batch; embeddings kept for retrieval over the whole held-out split."""
        loss, _, _, emb = self._step(batch)
        self.log("val/loss", loss, on_epoch=True, batch_size=len(batch["input"]), sync_dist=True)
        self._val.append(
            {"emb": emb.detach().float(), "anchor": batch["anchor"].float(), "label": batch["label"],
             "index": batch["index"]}
        )  # fmt: skip

    def on_validation_epoch_end(self) -> None:
        """Retrieval recall over the held-out split, both directions (modality→anchor ``m2a``, ``a2m``).

        On several devices the shards are gathered first and the distributed sampler's padding (repeated items)
        is dropped by item index, so the recalls are those of the whole split, as on one device.
        """
        if not self._val:
            return
        parts = {key: torch.cat([v[key] for v in self._val]) for key in ("emb", "anchor", "label", "index")}
        if self._distributed():
            parts = {key: self.all_gather(value).flatten(0, 1) for key, value in parts.items()}
            order = torch.argsort(parts["index"], stable=True)
            keep = torch.ones_like(order, dtype=torch.bool)
            keep[1:] = parts["index"][order][1:] != parts["index"][order][:-1]
            parts = {key: value[order[keep]] for key, value in parts.items()}
        emb, anchor, labels = (parts[key].cpu() for key in ("emb", "anchor", "label"))
        labels = labels if bool((labels >= 0).all()) else None
        ks = tuple(self.hparams.retrieval_ks)
        for direction, (q, k) in {"m2a": (emb, anchor), "a2m": (anchor, emb)}.items():
            for name, value in retrieval_recalls(q, k, ks, labels).items():
                # the same value on every device (gathered): sync_dist only silences Lightning's warning
                self.log(f"val/{name}_{direction}", value, prog_bar=name == "R@1" and direction == "m2a",
                         sync_dist=True)  # fmt: skip
        self.log("val/chance_R@1", 1.0 / len(emb), sync_dist=True)
        self._val = []

    def configure_optimizers(self):
        """AdamW (betas 0.9/0.95, paper Table 9), linear warmup then cosine decay, stepped per batch."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr,
            betas=(0.9, 0.95),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(total * self.hparams.warmup_fraction))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self) -> None:
        """Checks that the data binds the same modality with the same base weights, then the shared start."""
        data = getattr(self.trainer, "datamodule", None)
        if data is not None and hasattr(data, "modality"):
            if loader_key(data.modality) != self.modality:
                raise ValueError(f"data.modality is {data.modality!r} but model.modality is {self.modality!r}")
            for key in ("checkpoint", "preset"):
                if getattr(data, key) != self.hparams[key]:
                    raise ValueError(
                        f"data.{key} ({getattr(data, key)!r}) differs from model.{key} ({self.hparams[key]!r}): the "
                        "anchor embeddings must come from the ImageBind the encoder is bound into"
                    )
        super().on_fit_start()

    # -- accounting (LitMMModule) ---------------------------------------------------------------------
    def is_added_parameter(self, name: str) -> bool:
        """The LoRA factors; every other tensor is the encoder's own."""
        return ".lora_" in name

    def run_hparams(self) -> dict[str, Any]:
        """The bound modality, tuning and loss settings."""
        hp = self.hparams
        return {
            "method": f"bind_{hp.tuning}",
            "modality": self.modality,
            "preset": hp.preset,
            "lora_r": hp.lora_r if hp.tuning == "lora" else 0,
            "temperature": self.temperature,
            "lr": hp.lr,
            "weight_decay": hp.weight_decay,
        }

    # -- export -----------------------------------------------------------------------------------
    def merged_state_dict(self) -> dict[str, Tensor]:
        """The bound modality's tensors under official ImageBind names, LoRA merged into the base weights."""
        state = {}
        scaling = self.hparams.lora_alpha / self.hparams.lora_r
        raw = {k.removeprefix("imagebind."): v for k, v in self.state_dict().items()}
        for key, value in raw.items():
            if ".lora_" in key:
                continue
            if ".base_layer." in key:
                prefix = key.split(".base_layer.")[0]
                name = key.replace(".base_layer.", ".")
                if key.endswith(".weight"):
                    a = raw[f"{prefix}.lora_A.default.weight"]
                    b = raw[f"{prefix}.lora_B.default.weight"]
                    value = value + (b @ a) * scaling
                state[name] = value.detach().clone()
            else:
                state[key] = value.detach().clone()
        return state
