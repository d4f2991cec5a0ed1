"""Alias of :mod:`lit_multimodal.multimodal.pandagpt.instructions`, the home of the PandaGPT instruction data.

Kept so that configs naming ``lit_multimodal.data.instructions.InstructionDataModule`` and code importing from
here keep working; ``data/`` itself holds image-classification data only.
"""

from lit_multimodal.multimodal.pandagpt.instructions import (  # noqa: F401
    IMAGE_PLACEHOLDER,
    BadRecord,
    InstructionCollator,
    InstructionDataModule,
    JsonFormat,
    detect_format,
    parse_record,
)

__all__ = ["InstructionCollator", "InstructionDataModule", "detect_format", "parse_record"]
