"""lit_multimodal: Lightning experiments for VPT and PandaGPT."""

__version__ = "0.1.0"
