"""The quickstart: everything that makes ``lit-mm`` run from nothing, on a CPU, with nothing downloaded.

It sits above the model folders (``vision/``, ``multimodal/``) and ``data/``, and only the command line and the
tests import it:

- :mod:`~lit_multimodal.quickstart.digits`: scikit-learn's digits written as a json-split dataset (digits 5–9).
- :mod:`~lit_multimodal.quickstart.backbone`: the small ViT pre-trained on digits 0–4 (``quickstart:digits0-4``).
- :mod:`~lit_multimodal.quickstart.tiny_llm`: tiny LLaMA-architecture (and other family) model folders.
- :mod:`~lit_multimodal.quickstart.pandagpt`: the PandaGPT quickstart (tiny LLaMA ``quickstart:tiny-llama``,
  tiny ImageBind, digit conversations).
- :mod:`~lit_multimodal.quickstart.references`: replaces ``quickstart:`` references in a config by real paths.
"""

from lit_multimodal.quickstart.digits import QuickstartDigits
from lit_multimodal.quickstart.pandagpt import EpochLossPrinter, QuickstartDigitInstructions, QuickstartImageBind
from lit_multimodal.quickstart.references import resolve_references

__all__ = [
    "EpochLossPrinter",
    "QuickstartDigitInstructions",
    "QuickstartDigits",
    "QuickstartImageBind",
    "resolve_references",
]
