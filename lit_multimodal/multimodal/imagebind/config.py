"""Configuration of the ImageBind model (the knobs of the official ``imagebind_model.ImageBindModel``).

Field defaults are those of the released ``imagebind_huge`` model, not the defaults of the official
constructor (which describe no released checkpoint: vision 1024/24, text 768/12, output 768).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

MODALITIES: tuple[str, ...] = ("vision", "text", "audio", "depth", "thermal", "imu")


@dataclass
class ImageBindConfig:
    """Architecture of the six ImageBind encoders.

    Names follow the keyword arguments of the official ``ImageBindModel.__init__``; fields the official code
    hard-codes (bias_kv per modality, the vision pre-transformer LayerNorm, logit scales, context length,
    vocabulary, IMU geometry, head dropout) are exposed too, with the hard-coded values as defaults.

    Attributes:
        out_embed_dim: Output dimension shared by all modalities (``out_embed_dim``).
        video_frames: Frames of the vision input layout ``[3, video_frames, H, W]`` (``video_frames``).
        kernel_size: Conv3d kernel and stride of the vision stem (``kernel_size``).
        image_size: Side of the vision input (hard-coded 224 in the official code).
        vision_embed_dim: Vision trunk width (``vision_embed_dim``).
        vision_num_blocks: Vision trunk depth (``vision_num_blocks``).
        vision_num_heads: Vision attention heads (``vision_num_heads``).
        vision_drop_path: Largest drop-path rate of the vision trunk (hard-coded 0.0).
        vision_pre_transformer_ln: LayerNorm before the vision trunk (hard-coded True).
        vision_add_bias_kv: ``add_bias_kv`` of the vision attention (hard-coded False).
        text_embed_dim: Text trunk width (``text_embed_dim``).
        text_num_blocks: Text trunk depth (``text_num_blocks``).
        text_num_heads: Text attention heads (``text_num_heads``).
        text_drop_path: Largest drop-path rate of the text trunk (hard-coded 0.0).
        text_add_bias_kv: ``add_bias_kv`` of the text attention (hard-coded False).
        text_context_length: Token positions (hard-coded 77).
        text_vocab_size: Vocabulary size (hard-coded 49408).
        text_causal_masking: Causal attention mask in the text trunk (hard-coded True).
        text_logit_scale_init: Initial text logit scale (hard-coded 1/0.07).
        text_logit_scale_learnable: Whether the text logit scale is a parameter (hard-coded True).
        audio_embed_dim: Audio trunk width (``audio_embed_dim``).
        audio_kernel_size: Audio Conv2d kernel (``audio_kernel_size``).
        audio_stride: Audio Conv2d stride (``audio_stride``).
        audio_num_mel_bins: Mel bins of the audio input (``audio_num_mel_bins``).
        audio_target_len: Frames of the audio input (``audio_target_len``).
        audio_num_blocks: Audio trunk depth (``audio_num_blocks``).
        audio_num_heads: Audio attention heads (``audio_num_heads``).
        audio_drop_path: Largest drop-path rate of the audio trunk (``audio_drop_path``).
        audio_add_bias_kv: ``add_bias_kv`` of the audio attention (hard-coded True).
        audio_logit_scale: Fixed audio logit scale (hard-coded 20).
        depth_embed_dim: Depth trunk width (``depth_embed_dim``).
        depth_kernel_size: Depth Conv2d kernel and stride (``depth_kernel_size``).
        depth_image_size: Side of the depth input (hard-coded 224).
        depth_num_blocks: Depth trunk depth (``depth_num_blocks``).
        depth_num_heads: Depth attention heads (``depth_num_heads``).
        depth_drop_path: Largest drop-path rate of the depth trunk (``depth_drop_path``).
        depth_add_bias_kv: ``add_bias_kv`` of the depth attention (hard-coded True).
        depth_logit_scale: Fixed depth logit scale (hard-coded 5).
        thermal_embed_dim: Thermal trunk width (``thermal_embed_dim``).
        thermal_kernel_size: Thermal Conv2d kernel and stride (``thermal_kernel_size``).
        thermal_image_size: Side of the thermal input (hard-coded 224).
        thermal_num_blocks: Thermal trunk depth (``thermal_num_blocks``).
        thermal_num_heads: Thermal attention heads (``thermal_num_heads``).
        thermal_drop_path: Largest drop-path rate of the thermal trunk (``thermal_drop_path``).
        thermal_add_bias_kv: ``add_bias_kv`` of the thermal attention (hard-coded True).
        thermal_logit_scale: Fixed thermal logit scale (hard-coded 10).
        imu_embed_dim: IMU trunk width (``imu_embed_dim``).
        imu_kernel_size: Samples per IMU patch. The official constructor accepts ``imu_kernel_size`` but
            ignores it and hard-codes 8; here it is used.
        imu_channels: IMU input channels (hard-coded 6).
        imu_num_samples: IMU input length (hard-coded 2000).
        imu_num_blocks: IMU trunk depth (``imu_num_blocks``).
        imu_num_heads: IMU attention heads (``imu_num_heads``).
        imu_drop_path: Largest drop-path rate of the IMU trunk (``imu_drop_path``).
        imu_add_bias_kv: ``add_bias_kv`` of the IMU attention (hard-coded True).
        imu_head_dropout: Dropout before the IMU projection (hard-coded 0.5).
        imu_logit_scale: Fixed IMU logit scale (hard-coded 5).
        max_logit_scale: Clamp of every logit scale (hard-coded 100).
        mlp_ratio: Hidden width of the block MLPs relative to the trunk width (hard-coded 4).
        pandagpt_skip_audio_scale: Reproduce PandaGPT's vendored copy, whose forward applies only the L2
            normalisation to audio (no x20). Default False: official behaviour.
    """

    out_embed_dim: int = 1024
    video_frames: int = 2
    kernel_size: tuple[int, int, int] = (2, 14, 14)
    image_size: int = 224
    vision_embed_dim: int = 1280
    vision_num_blocks: int = 32
    vision_num_heads: int = 16
    vision_drop_path: float = 0.0
    vision_pre_transformer_ln: bool = True
    vision_add_bias_kv: bool = False
    text_embed_dim: int = 1024
    text_num_blocks: int = 24
    text_num_heads: int = 16
    text_drop_path: float = 0.0
    text_add_bias_kv: bool = False
    text_context_length: int = 77
    text_vocab_size: int = 49408
    text_causal_masking: bool = True
    text_logit_scale_init: float = 1 / 0.07
    text_logit_scale_learnable: bool = True
    audio_embed_dim: int = 768
    audio_kernel_size: int = 16
    audio_stride: int = 10
    audio_num_mel_bins: int = 128
    audio_target_len: int = 204
    audio_num_blocks: int = 12
    audio_num_heads: int = 12
    audio_drop_path: float = 0.1
    audio_add_bias_kv: bool = True
    audio_logit_scale: float = 20.0
    depth_embed_dim: int = 384
    depth_kernel_size: int = 16
    depth_image_size: int = 224
    depth_num_blocks: int = 12
    depth_num_heads: int = 8
    depth_drop_path: float = 0.0
    depth_add_bias_kv: bool = True
    depth_logit_scale: float = 5.0
    thermal_embed_dim: int = 768
    thermal_kernel_size: int = 16
    thermal_image_size: int = 224
    thermal_num_blocks: int = 12
    thermal_num_heads: int = 12
    thermal_drop_path: float = 0.0
    thermal_add_bias_kv: bool = True
    thermal_logit_scale: float = 10.0
    imu_embed_dim: int = 512
    imu_kernel_size: int = 8
    imu_channels: int = 6
    imu_num_samples: int = 2000
    imu_num_blocks: int = 6
    imu_num_heads: int = 8
    imu_drop_path: float = 0.7
    imu_add_bias_kv: bool = True
    imu_head_dropout: float = 0.5
    imu_logit_scale: float = 5.0
    max_logit_scale: float = 100.0
    mlp_ratio: float = 4.0
    pandagpt_skip_audio_scale: bool = False

    def __post_init__(self) -> None:
        """Normalises sequences read from YAML/JSON and checks that the widths split into heads."""
        self.kernel_size = tuple(int(k) for k in self.kernel_size)  # type: ignore[assignment]
        if len(self.kernel_size) != 3:
            raise ValueError(f"kernel_size must have 3 entries (T, H, W), got {self.kernel_size}")
        for modality in MODALITIES:
            dim, heads = self.embed_dim(modality), self.num_heads(modality)
            if dim % heads:
                raise ValueError(f"{modality}_embed_dim={dim} is not divisible by {modality}_num_heads={heads}")
        if self.imu_num_samples % self.imu_kernel_size:
            raise ValueError(
                f"imu_num_samples={self.imu_num_samples} is not a multiple of imu_kernel_size={self.imu_kernel_size}"
            )

    def embed_dim(self, modality: str) -> int:
        """Trunk width of a modality.

        Args:
            modality: One of :data:`MODALITIES`.

        Returns:
            The ``<modality>_embed_dim`` field.
        """
        return getattr(self, f"{modality}_embed_dim")

    def num_heads(self, modality: str) -> int:
        """Attention heads of a modality.

        Args:
            modality: One of :data:`MODALITIES`.

        Returns:
            The ``<modality>_num_heads`` field.
        """
        return getattr(self, f"{modality}_num_heads")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ImageBindConfig:
        """Builds a config from a mapping, rejecting unknown keys.

        Args:
            values: Field names and values (e.g. a YAML section).

        Returns:
            The config.

        Raises:
            ValueError: If a key is not a field.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ImageBindConfig fields: {unknown}")
        return cls(**values)

    @classmethod
    def huge(cls, **overrides: Any) -> ImageBindConfig:
        """The released ``imagebind_huge`` architecture (1311 state-dict keys, about 1.2e9 elements).

        Args:
            **overrides: Fields to change (e.g. ``pandagpt_skip_audio_scale=True``).

        Returns:
            The config.
        """
        return replace(cls(), **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> ImageBindConfig:
        """A narrow two-block variant with the input geometry and output size of ``huge``.

        Inputs are the same as for the released model (224 px images and 2-frame video, audio (1,128,204),
        depth/thermal (1,224,224), IMU (6,2000), 77 text tokens of a 49408 vocabulary) and the output is
        1024-wide, so it is a drop-in replacement for tests. Widths differ per modality so that a mix-up of
        modalities fails loudly.

        Args:
            **overrides: Fields to change.

        Returns:
            The config.
        """
        tiny = dict(
            vision_embed_dim=48,
            vision_num_blocks=2,
            vision_num_heads=3,
            text_embed_dim=32,
            text_num_blocks=2,
            text_num_heads=2,
            audio_embed_dim=40,
            audio_num_blocks=2,
            audio_num_heads=2,
            depth_embed_dim=24,
            depth_num_blocks=2,
            depth_num_heads=2,
            thermal_embed_dim=36,
            thermal_num_blocks=2,
            thermal_num_heads=3,
            imu_embed_dim=32,
            imu_num_blocks=2,
            imu_num_heads=4,
        )
        tiny.update(overrides)
        return cls(**tiny)
