"""Alias of :mod:`lit_multimodal.quickstart.pandagpt`, the home of the PandaGPT quickstart.

Kept so that configs naming ``lit_multimodal.multimodal.pandagpt.quickstart.EpochLossPrinter`` (and the other
classes) and code importing from here keep working.
"""

from lit_multimodal.quickstart.pandagpt import (  # noqa: F401
    LLM_GEOMETRY,
    QUESTIONS,
    QUICKSTART_LLM,
    EpochLossPrinter,
    QuickstartDigitInstructions,
    QuickstartImageBind,
    ensure_quickstart_llm,
    quickstart_root,
    write_digit_instructions,
)
from lit_multimodal.quickstart.references import resolve_llm_path  # noqa: F401
