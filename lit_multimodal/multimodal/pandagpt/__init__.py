"""PandaGPT: one ImageBind embedding as a soft token in a LoRA-tuned LLaMA/Vicuna, trained on image instructions."""
