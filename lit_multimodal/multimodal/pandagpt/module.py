"""PandaGPT instruction tuning: a LoRA-tuned causal LM reading one projected modality embedding as a soft token.

Only the LoRA matrices (on ``q/k/v/o_proj`` by default) and ``llama_proj`` (``Linear(1024, hidden)`` with bias)
train. The attribute names ``llama_model`` / ``llama_proj`` are the official ones, so the trainable state-dict
keys are those of the official delta checkpoint (``llama_model.base_model.model.model.layers.{i}.self_attn.
q_proj.lora_A.default.weight``, ``llama_proj.weight``, ...).

This module wires the pieces into the LightningModule; each piece has its own file: the base LLM's loading
(``llm.py``), LoRA (``lora.py``), the projector (``projector.py``), the soft-token splice shared with chat
(``splice.py``), the loss and ``gen_acc`` (``loss.py``) and the schedule (``schedule.py``). Counting, hparams and
the trainable-only checkpoints come from :class:`~lit_multimodal.training.module_base.LitMMModule`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lit_multimodal.errors import DataError
from lit_multimodal.multimodal.pandagpt.embed_noise import add_embedding_noise
from lit_multimodal.multimodal.pandagpt.embedder import Embedder, PrecomputedEmbedder
from lit_multimodal.multimodal.pandagpt.llm import DTypeName, load_base_llm
from lit_multimodal.multimodal.pandagpt.llm_folder import check_llm_folder
from lit_multimodal.multimodal.pandagpt.lora import apply_lora, is_trainable_name
from lit_multimodal.multimodal.pandagpt.loss import causal_lm_loss_sum, official_gen_acc
from lit_multimodal.multimodal.pandagpt.projector import ProjectorKind, build_projector, project
from lit_multimodal.multimodal.pandagpt.schedule import build_warmup_decay_scheduler, pandagpt_warmup_steps
from lit_multimodal.multimodal.pandagpt.splice import embed_with_soft_tokens
from lit_multimodal.training.errors import TrainingDiverged, check_setting
from lit_multimodal.training.module_base import LitMMModule
from lit_multimodal.training.param_counts import ParamCounts

log = logging.getLogger(__name__)

# apply_lora, the loss helpers and PandaGPTParamCounts are re-exported: they were defined here before.
__all__ = ["PandaGPT", "PandaGPTParamCounts", "apply_lora", "causal_lm_loss_sum", "official_gen_acc"]

HPARAM_METRICS = ("train/loss", "train/gen_acc", "val/loss", "val/gen_acc")
LossReduction = Literal["micro_batch_mean", "global_token_mean"]
#: The shared :class:`~lit_multimodal.training.param_counts.ParamCounts` (LLM as backbone; LoRA and projection added).
PandaGPTParamCounts = ParamCounts


def _joined(names: Any) -> str:
    return names if isinstance(names, str) else ",".join(names)


class PandaGPT(LitMMModule):
    """PandaGPT: LoRA on a local causal LM plus a linear projection of one modality embedding per sample.

    Args:
        llm_path: folder of the base LLM (e.g. Vicuna v0 7B), loaded offline with ``AutoModelForCausalLM``;
            ``quickstart:tiny-llama`` (the quickstart's tiny LLaMA) once ``lit-mm`` has resolved it to its folder.
        embedder: source of the ``(B, embed_dim)`` modality embeddings (e.g.
            :class:`~lit_multimodal.multimodal.pandagpt.embedder.PrecomputedEmbedder`); required to train or
            validate.
        modality: modality asked from the embedder (``vision`` for image instructions).
        embed_dim: embedding width (1024 for ImageBind-huge).
        dtype: dtype of the loaded LLM weights (the official loads fp32; LoRA weights stay fp32 under peft).
        attn_implementation: transformers attention backend (``eager`` as the official; None: the library's
            default, ``sdpa``).
        lora_r: LoRA rank.
        lora_alpha: LoRA alpha (scale ``alpha / r``).
        lora_dropout: dropout on the LoRA branch input.
        lora_target_modules: module names LoRA wraps (or ``all-linear``); None: the attention projections of
            the architecture (``q/k/v/o_proj`` for LLaMA, Mistral, Qwen2, Gemma; ``qkv_proj``, ``o_proj`` for Phi-3;
            see :mod:`~lit_multimodal.multimodal.pandagpt.lora_targets`).
        max_tgt_len: cut of the text part; used by the data module unless it sets its own.
        bos_token_id: BOS id; None: the tokenizer's. Pin it to reproduce a checkpoint (old Vicuna v0 folders
            resolve BOS/EOS to 0).
        pad_token_id: PAD id; None: the tokenizer's EOS (the official ``pad = eos``).
        lr: peak learning rate.
        betas: AdamW betas.
        eps: AdamW epsilon.
        weight_decay: decoupled weight decay, applied to every trainable tensor (one group, as the official
            DeepSpeed optimizer).
        warmup_rate: warmup fraction of the optimizer steps (at least ``min_warmup_steps``).
        min_warmup_steps: lower bound of the warmup.
        loss_reduction: ``micro_batch_mean`` (official: token mean per micro-batch, the micro-batches of an
            accumulation window averaged) or ``global_token_mean`` (summed token loss over all micro-batches and
            devices of the window divided by their target-token count; not available under DeepSpeed).
        gradient_checkpointing: recompute the LLM's activations in the backward pass.
        prompt_style: prompt format (:mod:`~lit_multimodal.multimodal.pandagpt.styles`): ``vicuna_v0`` (official),
            ``vicuna_v1.1``, ``llama2_chat``, ``llama3_instruct``, ``qwen2``, ``mistral_instruct``,
            ``chat_template`` (the tokenizer's own template) or a dotted class path. Training, chat, the demo and
            the server use it.
        system_prompt: system prompt of styles that have one (None: the style's default).
        projector: ``linear`` (PandaGPT) or ``mlp2x_gelu`` (LLaVA-1.5).
        soft_tokens: soft tokens per modality embedding.
        decoding: default decoding of chat, demo and server: ``sample`` (the official top-p 0.01) or ``greedy``.
        load_in_4bit: QLoRA: load the frozen LLM in 4-bit NF4 with double quantization and bf16 compute
            (bitsandbytes; needs a CUDA GPU). LoRA and the projector stay in full precision.
        embed_noise_std: Gaussian noise (std per dimension) added to the modality embedding in training steps
            only (CapDec; :mod:`~lit_multimodal.multimodal.pandagpt.embed_noise`); 0: off, as the official.
    """

    hparam_metrics = HPARAM_METRICS
    lr_log_interval = "step"  # the schedule steps per optimizer step
    backbone_label = "LLM"

    def __init__(
        self,
        llm_path: str | None = None,
        embedder: Embedder | None = None,
        modality: str = "vision",
        embed_dim: int = 1024,
        dtype: DTypeName = "float32",
        attn_implementation: str | None = None,
        lora_r: int = 32,
        lora_alpha: int = 32,
        lora_dropout: float = 0.1,
        lora_target_modules: tuple[str, ...] | str | None = None,
        max_tgt_len: int = 1024,
        bos_token_id: int | None = None,
        pad_token_id: int | None = None,
        lr: float = 5e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.001,
        warmup_rate: float = 0.1,
        min_warmup_steps: int = 10,
        loss_reduction: LossReduction = "micro_batch_mean",
        gradient_checkpointing: bool = False,
        prompt_style: str = "vicuna_v0",
        system_prompt: str | None = None,
        projector: ProjectorKind = "linear",
        soft_tokens: int = 1,
        decoding: Literal["sample", "greedy"] = "sample",
        load_in_4bit: bool = False,
        embed_noise_std: float = 0.0,
    ) -> None:
        super().__init__()
        if not llm_path:
            raise ValueError("model.llm_path must name a local folder with the base LLM (config + weights)")
        check_setting(lr >= 0, "model.lr", lr, "a learning rate >= 0")
        if loss_reduction not in ("micro_batch_mean", "global_token_mean"):
            raise ValueError(f"loss_reduction must be micro_batch_mean or global_token_mean, got {loss_reduction!r}")
        if decoding not in ("sample", "greedy"):
            raise ValueError(f"model.decoding must be sample or greedy, got {decoding!r}")
        self.save_hyperparameters(ignore=["embedder"], logger=False)
        self.hparams.update(betas=list(betas))
        table_dim = embedder.dim if isinstance(embedder, PrecomputedEmbedder) else None
        if table_dim and table_dim != embed_dim:
            raise DataError(
                f"{embedder.path}: embeddings are {table_dim} wide but model.embed_dim is {embed_dim}; use a table "
                f"of the encoder PandaGPT reads (1024 for ImageBind-huge) or set model.embed_dim: {table_dim}"
            )
        self.llm_path = check_llm_folder(str(llm_path))
        self.embedder = embedder
        self.modality = modality
        self.embed_dim = embed_dim
        self.max_tgt_len = max_tgt_len
        self.bos_token_id = bos_token_id
        self.pad_token_id = pad_token_id
        self.loss_reduction = loss_reduction
        self.lr = lr
        self.prompt_style = prompt_style
        self.system_prompt = system_prompt
        self.soft_tokens = soft_tokens
        self.decoding = decoding

        from lit_multimodal.multimodal.pandagpt.lora_targets import resolve_lora_targets

        llm = load_base_llm(self.llm_path, dtype, attn_implementation, load_in_4bit)
        self._check_tokenizer(llm)
        targets = resolve_lora_targets(llm.config, lora_target_modules)
        # Plain lists, so checkpoints stay loadable with torch.load(weights_only=True).
        self.hparams.update(lora_target_modules=targets)
        if load_in_4bit:
            from peft import prepare_model_for_kbit_training

            llm = prepare_model_for_kbit_training(llm, use_gradient_checkpointing=gradient_checkpointing)
        self.llama_model = apply_lora(llm, lora_r, lora_alpha, lora_dropout, targets)
        # from_pretrained returns the model in eval mode and Lightning keeps submodule modes as found, which would
        # switch LoRA dropout off; the official trains with everything in train mode.
        self.llama_model.train()
        if gradient_checkpointing:
            self.llama_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # Created after get_peft_model, as the official, so peft's freezing never touches it.
        self.llama_proj = build_projector(projector, embed_dim, llm.config.get_text_config().hidden_size, soft_tokens)
        self.check_trainable()
        self.param_counts = self.count_parameters()
        # Checkpoints hold only trainable tensors; the frozen LLM comes from llm_path.
        self.strict_loading = False
        self._window_tokens = torch.zeros((), dtype=torch.float64)
        self._empty_batches = 0

    def _check_tokenizer(self, llm: nn.Module) -> None:
        """Fails early on a prompt style the tokenizer cannot render; grows the embeddings for added tokens."""
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.llm_path, local_files_only=True)
        except (OSError, ValueError) as err:  # a folder without tokenizer files (data.tokenizer names another)
            log.info("no tokenizer in %s (%s); prompt style checked when the data loads", self.llm_path, err)
            return
        self.conversation_tokenizer(tokenizer)
        rows = llm.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > rows:
            # Added tokens (chat markers) without embedding rows would index out of range; LoRA does not train
            # the new rows, so they stay at their initialisation.
            rank_zero_warn(
                f"tokenizer has {len(tokenizer)} tokens, embeddings {rows}: resizing; new rows are untrained"
            )
            llm.resize_token_embeddings(len(tokenizer))

    def conversation_tokenizer(self, tokenizer: Any, max_tgt_len: int | None = None) -> Any:
        """The conversation tokenizer of this model's prompt style, special ids and soft-token count.

        A :class:`~lit_multimodal.multimodal.pandagpt.conversation.ConversationTokenizer`, used by the data, chat,
        demo and server alike.
        """
        from lit_multimodal.multimodal.pandagpt.conversation import ConversationTokenizer

        return ConversationTokenizer(
            tokenizer,
            max_tgt_len=max_tgt_len or self.max_tgt_len,
            bos_token_id=self.bos_token_id,
            pad_token_id=self.pad_token_id,
            prompt_style=self.prompt_style,
            soft_tokens=self.soft_tokens,
            system_prompt=self.system_prompt,
        )

    def project(self, modality_embeds: torch.Tensor) -> torch.Tensor:
        """``(B, embed_dim)`` modality embeddings → ``(B, soft_tokens, hidden)`` soft tokens."""
        return project(self.llama_proj, modality_embeds, self.soft_tokens)

    # -- parameters -------------------------------------------------------------------------------
    def check_trainable(self) -> None:
        """Raises unless exactly the LoRA matrices and the projection require gradients."""
        wrong = [n for n, p in self.named_parameters() if p.requires_grad != is_trainable_name(n)]
        if wrong:
            raise RuntimeError(f"only LoRA and llama_proj may train; wrong requires_grad on {wrong[:8]}")
        if not any(".lora_" in n for n, _ in self.named_parameters()):
            raise RuntimeError(
                f"no LoRA layer was created; check lora_target_modules {self.hparams.lora_target_modules}"
            )

    def counted_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The LLM (with LoRA) and the projection; the embedder is not counted."""
        return [*self.llama_model.named_parameters("llama_model"), *self.llama_proj.named_parameters("llama_proj")]

    def is_added_parameter(self, name: str) -> bool:
        """LoRA matrices and the projection; the rest is the pre-trained LLM (the backbone)."""
        return is_trainable_name(name)

    # -- forward ----------------------------------------------------------------------------------
    def embed_inputs(self, paths: list[str]) -> torch.Tensor:
        """The embedder's ``(B, embed_dim)`` embeddings of ``paths``, on this module's device, without gradient."""
        if self.embedder is None:
            raise ValueError(
                "PandaGPT needs model.embedder (class_path/init_args of an Embedder, e.g. "
                "lit_multimodal.multimodal.pandagpt.embedder.PrecomputedEmbedder) to train or validate"
            )
        with torch.no_grad():
            embeds = self.embedder.embed(self.modality, list(paths))
        if embeds.shape != (len(paths), self.embed_dim):
            raise DataError(f"embedder returned shape {tuple(embeds.shape)}, expected ({len(paths)}, {self.embed_dim})")
        return embeds.detach().to(self.device)

    def build_inputs_embeds(
        self, input_ids: torch.Tensor, modality_embeds: torch.Tensor, image_position: int
    ) -> torch.Tensor:
        """Token embeddings with the projected modality embedding as the token(s) from ``image_position`` on.

        The one splice of training and chat (:mod:`~lit_multimodal.multimodal.pandagpt.splice`): equal to the
        official ``cat([bos, prefix, llama_proj(embed), text])``.
        """
        return embed_with_soft_tokens(self.llama_model, input_ids, self.project(modality_embeds), image_position)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        modality_embeds: torch.Tensor,
        image_position: int,
    ) -> torch.Tensor:
        """Logits ``(B, L, vocab)`` of the full sequence."""
        inputs_embeds = self.build_inputs_embeds(input_ids, modality_embeds, image_position)
        return self.llama_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False).logits

    def _shared_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        embeds = self.embed_inputs(batch["image_paths"])
        if self.training:
            embeds = add_embedding_noise(embeds, self.hparams.embed_noise_std)
        logits = self(batch["input_ids"], batch["attention_mask"], embeds, int(batch["image_position"]))
        targets = batch["target_ids"]
        loss_sum, count = causal_lm_loss_sum(logits, targets)
        return loss_sum, count, logits, official_gen_acc(logits.detach(), targets)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Token-mean cross-entropy of the micro-batch (or its token sum under ``global_token_mean``)."""
        loss_sum, count, _, gen_acc = self._shared_step(batch)
        if int(count) == 0:
            # The official would produce NaN here (every target cut by max_tgt_len); this contributes nothing.
            self._empty_batches += 1
            rank_zero_warn(f"batch {batch_idx} has no target token after truncation; it adds no gradient")
        mean = loss_sum / count.clamp(min=1)
        if not torch.isfinite(mean):
            raise TrainingDiverged(
                f"training loss is {mean.item()} at epoch {self.current_epoch}, batch {batch_idx}; the run stopped: "
                "lower model.lr or check the data"
            )
        size = len(batch["image_paths"])
        self.log("train/loss", mean, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        self.log("train/gen_acc", gen_acc, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        if self.loss_reduction == "global_token_mean":
            self._window_tokens = self._window_tokens.to(self.device) + count.to(torch.float64)
            return loss_sum
        return mean

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Token-mean loss and ``gen_acc`` on held-out conversations."""
        loss_sum, count, _, gen_acc = self._shared_step(batch)
        size = len(batch["image_paths"])
        self.log("val/loss", loss_sum / count.clamp(min=1), on_epoch=True, sync_dist=True, batch_size=size)
        self.log("val/gen_acc", gen_acc, on_epoch=True, sync_dist=True, batch_size=size)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Under ``global_token_mean``, turns the accumulated token-sum gradients into a global token mean.

        Lightning divides every micro-batch loss by ``accumulate_grad_batches`` (A) and DDP averages over the
        W devices, so the gradients hold ``sum / (A W)``; multiplying by ``A W / N`` (N: target tokens of the
        window on all devices) gives ``sum / N``. This runs before gradient clipping.
        """
        if self.loss_reduction != "global_token_mean":
            return
        tokens = self.trainer.strategy.reduce(self._window_tokens.to(self.device).clone(), reduce_op="sum")
        scale = self.trainer.accumulate_grad_batches * self.trainer.world_size / max(float(tokens), 1.0)
        for param in self.parameters():
            if param.requires_grad and param.grad is not None:
                param.grad.mul_(scale)
        self._window_tokens = torch.zeros((), dtype=torch.float64, device=self.device)

    # -- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self):
        """AdamW over the trainable tensors (one group) and the log-warmup / linear-decay schedule per step."""
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=self.lr,
            betas=tuple(self.hparams.betas),
            eps=self.hparams.eps,
            weight_decay=self.hparams.weight_decay,
        )
        total = int(self.trainer.estimated_stepping_batches)
        warmup = pandagpt_warmup_steps(total, self.hparams.warmup_rate, self.hparams.min_warmup_steps)
        rank_zero_info(f"PandaGPT schedule: {total} optimizer steps, log warmup over {warmup}, then linear decay")
        scheduler = build_warmup_decay_scheduler(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def setup(self, stage: str) -> None:
        """Checks the embedder and the loss reduction against the strategy before any data is read."""
        from lightning.pytorch.strategies import DeepSpeedStrategy

        if stage in ("fit", "validate") and self.embedder is None:
            self.embed_inputs([])  # raises the explanatory error
        if self.loss_reduction == "global_token_mean" and isinstance(self.trainer.strategy, DeepSpeedStrategy):
            raise ValueError(
                "loss_reduction global_token_mean rescales gradients before the optimizer step, which DeepSpeed "
                "owns; use micro_batch_mean (the official) or a DDP/single-device strategy"
            )

    # -- accounting and logging (LitMMModule) ----------------------------------------------------------
    def on_fit_start(self) -> None:
        """Checks the trainable set, then the shared start (counts, tuned percents, hparams, DeepSpeed switch)."""
        self.check_trainable()
        super().on_fit_start()

    def run_hparams(self) -> dict[str, Any]:
        """The method, embedder, LLM, LoRA shape, prompt style and optimisation settings."""
        datamodule = getattr(self.trainer, "datamodule", None)
        return {
            "method": "pandagpt_lora",
            "embedder": type(self.embedder).__name__ if self.embedder is not None else "none",
            "llm": os.path.basename(os.path.normpath(self.llm_path)),
            "lora_r": self.hparams.lora_r,
            "lora_alpha": self.hparams.lora_alpha,
            "lora_dropout": self.hparams.lora_dropout,
            "lora_targets": _joined(self.hparams.lora_target_modules),
            "prompt_style": str(self.prompt_style),
            "lr": self.lr,
            "weight_decay": self.hparams.weight_decay,
            "loss_reduction": self.loss_reduction,
            "max_tgt_len": int(getattr(datamodule, "max_tgt_len", None) or self.max_tgt_len),
        }

    # -- trainable-only checkpoints (LitMMModule) ------------------------------------------------------
    def checkpoint_description(self) -> str:
        """The LoRA shape, for the message of a checkpoint that does not fit."""
        return f"PandaGPT, LoRA r {self.hparams.lora_r} on {self.hparams.lora_target_modules}"
