"""Alias of :mod:`lit_multimodal.quickstart.backbone`, the home of the quickstart backbone."""

from lit_multimodal.quickstart.backbone import (  # noqa: F401
    PRETRAIN_EPOCHS,
    PRETRAIN_LR,
    PRETRAIN_SEED,
    ensure_quickstart_backbone,
    pretrain_on_source_digits,
)
