"""Multimodal models: ImageBind encoders and PandaGPT."""
