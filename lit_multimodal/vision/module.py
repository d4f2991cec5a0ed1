"""The image-classification LightningModule for every tuning method (VPT-Shallow/Deep and baselines)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info

from lit_multimodal.progress import progress
from lit_multimodal.training.errors import TrainingDiverged, check_setting
from lit_multimodal.training.metrics import StageMetrics, report_test_details
from lit_multimodal.training.module_base import LitMMModule
from lit_multimodal.vision.backbones import BackboneConfig, build_vit
from lit_multimodal.vision.checkpoint_identity import image_classifier_identity
from lit_multimodal.vision.checkpoints import load_backbone_checkpoint
from lit_multimodal.vision.classifier import ViTClassifier
from lit_multimodal.vision.feature_cache import FeatureCache, FeatureDataset, backbone_key
from lit_multimodal.vision.methods import MethodName, TuningMethod, build_method
from lit_multimodal.vision.recipe import OptimConfig, build_optimizer, build_scheduler, check_optim, scaled_lr
from lit_multimodal.vision.tuning import PROMPT_METHODS, ParamCounts, count_parameters

log = logging.getLogger(__name__)

# Metrics declared to TensorBoard's HParams plugin once per fit; the same names are logged as scalars.
HPARAM_METRICS = ("val/top1", "test/top1")


class ImageClassifier(LitMMModule):
    """A frozen (or partly frozen) ViT with a linear head, tuned by one registered method (docs/methods.md).

    Args:
        num_classes: output classes; the CLI fills it from ``data.num_classes`` when left empty.
        backbone: which ViT and which weights file.
        tuning: the tuning method: a registered name with its defaults (``vpt_deep``, ``vpt_shallow``,
            ``linear``, ``full``, ``partial``, ``bias``, ``lora``, ``dora``, ``adapter_plus``, ... see
            docs/methods.md), or a method with options, e.g. ``{class_path: LoRA, init_args: {r: 16}}``
            (``--model.tuning.help LoRA`` lists them).
        num_prompts: prompt length ``p`` when ``tuning`` is a ``vpt_*`` name.
        prompt_dropout: dropout on prompts when ``tuning`` is a ``vpt_*`` name; default 0.1 for ``vpt_deep``
            and 0.0 for ``vpt_shallow`` (the paper's convention).
        prompt_project: prompt width projected to the token width by a Linear; -1 (default) for none.
        partial_blocks: ``k`` when ``tuning`` is ``partial``.
        optim: optimiser and schedule (default: the official SGD warmup-cosine recipe).
        feature_cache: ``linear`` only: compute the frozen backbone's features of every split with a
            deterministic transform once and train the head on them (see
            :mod:`lit_multimodal.vision.feature_cache`); splits with random augmentation still run the backbone.
        feature_cache_dir: cache folder shared by the runs of a sweep; default ``$LIT_MM_CACHE/features``
            (``~/.cache/lit_multimodal/features``).
        compile: ``torch.compile`` the classifier (in place, so checkpoints keep their keys). It pays off for
            long runs on a GPU; the first steps spend tens of seconds compiling.
        activation_checkpointing: recompute block activations in the backward pass (less memory for ViT-L/H
            and long prompts, roughly one extra forward per step).
        attention: attention kernel: ``auto`` (per device and precision), ``fused`` or ``math``.
    """

    hparam_metrics = HPARAM_METRICS
    lr_log_interval = "epoch"  # the schedule steps per epoch; epoch 0 runs at 0 under the official warmup

    def __init__(
        self,
        num_classes: int | None = None,
        backbone: BackboneConfig = BackboneConfig(),  # noqa: B008 - read-only default
        tuning: TuningMethod | MethodName = "vpt_deep",
        num_prompts: int = 50,
        prompt_dropout: float | None = None,
        prompt_project: int = -1,
        partial_blocks: int = 1,
        optim: OptimConfig = OptimConfig(),  # noqa: B008 - read-only default
        feature_cache: bool = True,
        feature_cache_dir: str | None = None,
        compile: bool = False,
        activation_checkpointing: bool = False,
        attention: Literal["auto", "fused", "math"] = "auto",
    ) -> None:
        super().__init__()
        if num_classes is None or num_classes < 1:
            raise ValueError(
                f"model.num_classes must be a positive integer (or come from data.num_classes); got {num_classes}"
            )
        backbone = backbone if isinstance(backbone, BackboneConfig) else BackboneConfig(**(backbone or {}))
        optim = optim if isinstance(optim, OptimConfig) else OptimConfig(**(optim or {}))
        check_optim(optim, "model.optim")
        if tuning in PROMPT_METHODS:
            check_setting(num_prompts >= 1, "model.num_prompts", num_prompts, f"at least 1 for tuning {tuning}")
        if prompt_dropout is None:
            prompt_dropout = 0.1 if tuning in ("vpt_deep", "vpt_deep_bias") else 0.0
        method = build_method(
            tuning,
            num_prompts=num_prompts,
            prompt_dropout=prompt_dropout,
            prompt_project=prompt_project,
            partial_blocks=partial_blocks,
        )
        self.save_hyperparameters(logger=False)
        # Plain dicts, so checkpoints stay loadable with torch.load(weights_only=True).
        self.hparams.update(backbone=asdict(backbone), optim=asdict(optim), prompt_dropout=prompt_dropout)
        if not isinstance(tuning, str):
            self.hparams.update(tuning=method.spec())
        self.backbone_config = backbone
        self.optim_config = optim
        self.tuning = method.name
        vit = build_vit(backbone)
        self.load_report = load_backbone_checkpoint(vit, backbone) if backbone.checkpoint else None
        self.net = ViTClassifier(
            vit,
            num_classes=num_classes,
            tuning=method,
            activation_checkpointing=activation_checkpointing,
            attention=attention,
        )
        if compile:
            self.net.compile()
        self.feature_cache = FeatureCache(feature_cache_dir) if feature_cache and self.tuning == "linear" else None
        # Checkpoints hold only trainable tensors; the frozen rest comes from backbone.checkpoint.
        self.strict_loading = False
        # top-1, macro and (with more than 5 classes) top-5; the test stage adds per-class and confusion.
        self.metrics = torch.nn.ModuleDict(
            {"val": StageMetrics(num_classes), "test": StageMetrics(num_classes, detailed=True)}
        )
        self.test_details: dict[str, Any] | None = None
        self.param_counts: ParamCounts = count_parameters(self.net)
        self.lr: float | None = None

    # -- forward and steps ------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of images ``(B, C, H, W)``, or of cached backbone features ``(B, D)`` (linear probing)."""
        if images.ndim == 2:
            return self.net.head(images)
        return self.net(images)

    # -- feature cache (linear probing) -----------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Linear probing: swaps each deterministic split's images for cached backbone features."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.feature_cache is None or not hasattr(datamodule, "split_fingerprint"):
            return
        roles = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        backbone: dict[str, Any] | None = None  # hashing the weights once per stage is enough
        for role in roles.get(stage, ()):
            if not datamodule.has_split(role) or not datamodule.transform_is_deterministic(role):
                continue
            if isinstance(datamodule.datasets.get(role), FeatureDataset):
                continue
            key = self.feature_key(datamodule, role, backbone)
            backbone = key["backbone"]
            dataset = datamodule.datasets[role]
            (features, labels), hit = self.feature_cache.get_or_compute(
                key, lambda dataset=dataset: self.extract_features(dataset, datamodule.batch_size)
            )
            rank_zero_info(
                f"feature cache: {role} split ({len(labels)} images) {'loaded from' if hit else 'written to'} "
                f"{self.feature_cache.path(key)}"
            )
            datamodule.datasets[role] = FeatureDataset(features, labels)

    def feature_key(self, datamodule: Any, role: str, backbone: dict[str, Any] | None = None) -> dict[str, Any]:
        """Cache key of one split: backbone weights, data, transform and precision.

        Args:
            datamodule: the run's image-classification data module.
            role: ``train``, ``val`` or ``test``.
            backbone: the backbone part computed earlier in the same stage (else hashed now).
        """
        cfg = self.backbone_config
        return {
            "backbone": backbone or backbone_key(self.net.backbone, cfg.arch, cfg.img_size, cfg.pooling),
            "data": datamodule.split_fingerprint(role),
            "precision": str(self.trainer.precision),
        }

    @torch.no_grad()
    def extract_features(self, dataset: Any, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled backbone features (fp32, on the CPU) and labels of a dataset, in order, in eval mode."""
        from torch.utils.data import DataLoader

        from lit_multimodal.training.loaders import collate_skipping_none

        device = self.trainer.strategy.root_device
        home = next(self.net.parameters()).device
        was_training = self.net.training
        self.net.to(device).eval()
        # A private generator: iterating a loader draws a seed, and the global RNG must stay as in an uncached run.
        loader = DataLoader(
            dataset,
            batch_size=min(batch_size, 256),
            shuffle=False,
            collate_fn=collate_skipping_none,
            generator=torch.Generator(),
        )
        features, labels = [], []
        try:
            with progress(f"feature cache: backbone features of {len(dataset)} images", len(loader)) as bar:
                for batch in loader:
                    bar.advance()
                    if batch is None:
                        continue
                    images, targets = batch
                    with self.trainer.precision_plugin.forward_context():
                        out = self.net.forward_features(images.to(device))
                    features.append(out.float().cpu())
                    labels.append(targets)
        finally:
            self.net.to(home).train(was_training)
        return torch.cat(features), torch.cat(labels).long()

    def train(self, mode: bool = True) -> ImageClassifier:
        """Keeps frozen backbone parts in eval mode whenever Lightning switches to training."""
        super().train(mode)
        self.net.train(mode)
        return self

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        """Cross-entropy on one batch (mean over the batch, as the official ``softmax`` loss)."""
        if batch is None:  # every image of the batch was skipped as corrupt
            return None
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx} (lr {self.lr}); "
                "the run stopped: lower model.optim.base_lr or check the data"
            )
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels))
        return loss

    def _eval_step(self, stage: str, batch: Any) -> None:
        if batch is None:
            return
        images, labels = batch
        logits = self(images)
        self.log(
            f"{stage}/loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True, batch_size=len(labels)
        )
        stage_metrics = self.metrics[stage]
        stage_metrics.update(logits, labels)
        for name, metric in stage_metrics.scalars.items():
            self.log(f"{stage}/{name}", metric, on_epoch=True, prog_bar=name == "top1")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Top-1, macro (and with more than 5 classes top-5) accuracy and loss on the validation split."""
        self._eval_step("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Top-1, macro (and with more than 5 classes top-5) accuracy and loss on the test split."""
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        """Per-class accuracy and the confusion matrix (``test_details``, PNG and TensorBoard figure)."""
        self.test_details = report_test_details(self, self.metrics["test"], self.trainer.default_root_dir)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Class probabilities."""
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(images).softmax(-1)

    # -- optimisation -----------------------------------------------------------------------------
    def global_batch_size(self) -> int:
        """Per-device batch × devices × gradient accumulation: the batch the lr scaling refers to."""
        datamodule = getattr(self.trainer, "datamodule", None)
        per_device = getattr(datamodule, "batch_size", None)
        if per_device is None:
            raise ValueError("lr scaling needs data.batch_size; set model.optim.scale_lr false to use base_lr as is")
        return int(per_device) * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def configure_optimizers(self):
        """Optimiser over trainable tensors; warmup-cosine schedule stepped per epoch."""
        cfg = self.optim_config
        batch = self.global_batch_size() if cfg.scale_lr else 0
        self.lr = scaled_lr(cfg.base_lr, batch, cfg.scale_lr)
        if cfg.scale_lr:
            rank_zero_info(f"learning rate {self.lr:.6g} = base_lr {cfg.base_lr:g} x global batch {batch} / 256")
        trainable = [(n.removeprefix("net."), p) for n, p in self.named_parameters() if p.requires_grad]
        optimizer = build_optimizer(trainable, cfg, self.lr, self.tuning, self.net.method.recipe.optimizer)
        max_epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 100
        scheduler = build_scheduler(optimizer, cfg, max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    # -- accounting and logging (LitMMModule) ----------------------------------------------------------
    def count_parameters(self) -> ParamCounts:
        """Counts of the classifier: backbone under ``backbone.``, what the method added (prompts, adapters)."""
        return count_parameters(self.net)

    def on_fit_start(self) -> None:
        """The shared start (counts, tuned percents, hparams), then how the backbone checkpoint loaded."""
        super().on_fit_start()
        if self.load_report is not None:
            rank_zero_info(self.load_report.summary())

    def run_hparams(self) -> dict[str, Any]:
        """The tuning method, prompt length, architecture and optimiser settings."""
        return {
            "tuning": self.tuning,
            "num_prompts": int(getattr(self.net.method, "num_prompts", 0)),
            "arch": self.backbone_config.arch,
            "base_lr": self.optim_config.base_lr,
            "lr": float(self.lr if self.lr is not None else self.optim_config.base_lr),
            "weight_decay": self.optim_config.weight_decay,
        }

    # -- trainable-only checkpoints (LitMMModule) ------------------------------------------------------
    checkpoint_identity = staticmethod(image_classifier_identity)

    def checkpoint_description(self) -> str:
        """The tuning method, for the message of a checkpoint that does not fit."""
        return f"tuning {self.tuning!r}"
