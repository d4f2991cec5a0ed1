"""ImageBind: six modality encoders into one embedding space (official ``imagebind_model.ImageBindModel``).

Module names reproduce the official ones, so ``state_dict()`` of ``ImageBindModel(ImageBindConfig.huge())``
has exactly the keys, shapes and parameter/buffer kinds of the released ``imagebind_huge.pth``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .config import MODALITIES, ImageBindConfig
from .heads import LearnableLogitScaling, Normalize, SelectElement, SelectEOSAndProject
from .layers import Trunk
from .preprocessors import IMUPreprocessor, PadIm2Video, PatchEmbedGeneric, RGBDTPreprocessor, TextPreprocessor

__all__ = ["MODALITIES", "ImageBindModel"]


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


class ImageBindModel(nn.Module):
    """The six ImageBind encoders: ``vision``, ``text``, ``audio``, ``depth``, ``thermal``, ``imu``.

    Each modality runs preprocessor → trunk → head → postprocessor, held in the ``nn.ModuleDict`` s
    ``modality_preprocessors``, ``modality_trunks``, ``modality_heads`` and ``modality_postprocessors``.

    Expected inputs (official geometry for ``huge``/``tiny``):

    - ``vision``: image (B,3,224,224) or video clips (B,S,3,T,224,224). As in official ImageBind every
      input with 5 or more dimensions is read as clips (B,S,...), so a single video needs S=1.
    - ``text``: token ids (B,77), EOT (the largest id) marking the pooled position.
    - ``audio``: fbank (B,1,128,204) or clips (B,S,1,128,204).
    - ``depth``/``thermal``: (B,1,224,224).
    - ``imu``: (B,6,2000).

    Args:
        config: Architecture; ``ImageBindConfig.huge()`` when omitted.
    """

    def __init__(self, config: ImageBindConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ImageBindConfig.huge()
        self.modality_preprocessors = self._create_preprocessors(config)
        self.modality_trunks = nn.ModuleDict(
            {
                m: Trunk(
                    dim=config.embed_dim(m),
                    num_blocks=getattr(config, f"{m}_num_blocks"),
                    num_heads=config.num_heads(m),
                    add_bias_kv=getattr(config, f"{m}_add_bias_kv"),
                    pre_transformer_ln=m == "vision" and config.vision_pre_transformer_ln,
                    drop_path_rate=getattr(config, f"{m}_drop_path"),
                    mlp_ratio=config.mlp_ratio,
                )
                for m in MODALITIES
            }
        )
        self.modality_heads = self._create_heads(config)
        self.modality_postprocessors = self._create_postprocessors(config)

    @staticmethod
    def _create_preprocessors(c: ImageBindConfig) -> nn.ModuleDict:
        kt, kh, kw = c.kernel_size
        vision_layout = (
            _conv_out(c.video_frames, kt, kt),
            _conv_out(c.image_size, kh, kh),
            _conv_out(c.image_size, kw, kw),
        )
        vision_stem = PatchEmbedGeneric(
            [
                PadIm2Video(ntimes=2),
                nn.Conv3d(3, c.vision_embed_dim, kernel_size=c.kernel_size, stride=c.kernel_size, bias=False),
            ]
        )
        audio_stem = PatchEmbedGeneric(
            [nn.Conv2d(1, c.audio_embed_dim, kernel_size=c.audio_kernel_size, stride=c.audio_stride, bias=False)],
            norm_layer=nn.LayerNorm(c.audio_embed_dim),
        )
        audio_layout = (
            _conv_out(c.audio_num_mel_bins, c.audio_kernel_size, c.audio_stride),
            _conv_out(c.audio_target_len, c.audio_kernel_size, c.audio_stride),
        )

        def image_stem(dim: int, kernel: int) -> PatchEmbedGeneric:
            conv = nn.Conv2d(1, dim, kernel_size=kernel, stride=kernel, bias=False)
            return PatchEmbedGeneric([conv], norm_layer=nn.LayerNorm(dim))

        depth_side = _conv_out(c.depth_image_size, c.depth_kernel_size, c.depth_kernel_size)
        thermal_side = _conv_out(c.thermal_image_size, c.thermal_kernel_size, c.thermal_kernel_size)
        imu_stem = PatchEmbedGeneric(
            [nn.Linear(c.imu_channels * c.imu_kernel_size, c.imu_embed_dim, bias=False)],
            norm_layer=nn.LayerNorm(c.imu_embed_dim),
        )
        return nn.ModuleDict(
            {
                "vision": RGBDTPreprocessor(vision_stem, None, vision_layout, c.vision_embed_dim),
                "text": TextPreprocessor(
                    c.text_vocab_size, c.text_context_length, c.text_embed_dim, causal_masking=c.text_causal_masking
                ),
                "audio": RGBDTPreprocessor(audio_stem, None, audio_layout, c.audio_embed_dim),
                # Official naming quirk: depth uses ``depth_stem``, thermal (like audio) ``rgbt_stem``.
                "depth": RGBDTPreprocessor(
                    None,
                    image_stem(c.depth_embed_dim, c.depth_kernel_size),
                    (depth_side, depth_side),
                    c.depth_embed_dim,
                ),
                "thermal": RGBDTPreprocessor(
                    image_stem(c.thermal_embed_dim, c.thermal_kernel_size),
                    None,
                    (thermal_side, thermal_side),
                    c.thermal_embed_dim,
                ),
                "imu": IMUPreprocessor(imu_stem, c.imu_kernel_size, c.imu_embed_dim, c.imu_num_samples),
            }
        )

    @staticmethod
    def _create_heads(c: ImageBindConfig) -> nn.ModuleDict:
        def head(dim: int) -> nn.Sequential:
            return nn.Sequential(
                nn.LayerNorm(dim, eps=1e-6), SelectElement(0), nn.Linear(dim, c.out_embed_dim, bias=False)
            )

        return nn.ModuleDict(
            {
                "vision": head(c.vision_embed_dim),
                "text": SelectEOSAndProject(
                    nn.Sequential(
                        nn.LayerNorm(c.text_embed_dim, eps=1e-6),
                        nn.Linear(c.text_embed_dim, c.out_embed_dim, bias=False),
                    )
                ),
                "audio": head(c.audio_embed_dim),
                "depth": head(c.depth_embed_dim),
                "thermal": head(c.thermal_embed_dim),
                "imu": nn.Sequential(
                    nn.LayerNorm(c.imu_embed_dim, eps=1e-6),
                    SelectElement(0),
                    nn.Dropout(c.imu_head_dropout),
                    nn.Linear(c.imu_embed_dim, c.out_embed_dim, bias=False),
                ),
            }
        )

    @staticmethod
    def _create_postprocessors(c: ImageBindConfig) -> nn.ModuleDict:
        def scaled(init: float, learnable: bool = False) -> nn.Sequential:
            return nn.Sequential(Normalize(-1), LearnableLogitScaling(init, learnable, c.max_logit_scale))

        return nn.ModuleDict(
            {
                "vision": Normalize(-1),
                "text": scaled(c.text_logit_scale_init, c.text_logit_scale_learnable),
                "audio": scaled(c.audio_logit_scale),
                "depth": scaled(c.depth_logit_scale),
                "thermal": scaled(c.thermal_logit_scale),
                "imu": scaled(c.imu_logit_scale),
            }
        )

    def encode(self, modality: str, x: Tensor) -> Tensor:
        """Embeds one modality, averaging over clips when the input has a clip dimension.

        As in official ImageBind, an input with ``ndim >= 5`` is (B, S, ...): it is flattened to (B·S, ...),
        embedded and postprocessed per clip, and the S results are averaged (so averaged normalised
        embeddings have norm <= the scale).

        Args:
            modality: One of :data:`MODALITIES`.
            x: Input of that modality. Floating inputs are cast to the dtype of the weights.

        Returns:
            Embeddings (B, out_embed_dim).
        """
        if modality not in self.modality_preprocessors:
            raise KeyError(f"unknown modality {modality!r}; expected one of {list(self.modality_preprocessors)}")
        clips = x.ndim >= 5
        if clips:
            batch, num_clips = x.shape[:2]
            x = x.reshape(batch * num_clips, *x.shape[2:])
        preprocessor = self.modality_preprocessors[modality]
        if x.is_floating_point():
            x = x.to(next(preprocessor.parameters()).dtype)
        prepared = preprocessor(x)
        tokens = self.modality_trunks[modality](**prepared["trunk"])
        out = self.modality_heads[modality](tokens, **prepared["head"])
        postprocessor = self.modality_postprocessors[modality]
        if modality == "audio" and self.config.pandagpt_skip_audio_scale:
            # PandaGPT's vendored copy applies only the L2 normalisation to audio (no x20).
            out = postprocessor[0](out)
        else:
            out = postprocessor(out)
        if clips:
            out = out.reshape(batch, num_clips, -1).mean(dim=1)
        return out

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Embeds every modality of ``inputs`` (official ``ImageBindModel.forward``).

        Args:
            inputs: Modality name → input tensor (see the class docstring); None values are skipped.

        Returns:
            Modality name → embeddings (B, out_embed_dim).
        """
        return {modality: self.encode(modality, x) for modality, x in inputs.items() if x is not None}
