"""The soft-token splice: projected modality embedding(s) placed between the prompt pieces of one sequence.

Training (:class:`~lit_multimodal.multimodal.pandagpt.module.PandaGPT`) and generation
(:class:`~lit_multimodal.multimodal.pandagpt.chat.PandaGPTChat`) both go through :func:`embed_with_soft_tokens`.
The layout comes from :class:`~lit_multimodal.multimodal.pandagpt.conversation.ConversationTokenizer`: its
``input_ids`` hold placeholder ids at the soft-token slot (``image_position`` and the ``soft_tokens - 1`` after it),
the attention mask is 1 there and the targets are -100, so the mask and the labels need no splicing; only the
embeddings of the slot are replaced. The result equals the official ``cat([bos, prefix, llama_proj(embed), text])``:
the placeholder ids are never embedded into it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["embed_with_soft_tokens", "splice_soft_tokens"]


def splice_soft_tokens(token_embeds: torch.Tensor, soft: torch.Tensor, position: int) -> torch.Tensor:
    """``token_embeds`` with the ``n`` embeddings from ``position`` on replaced by ``soft``.

    Args:
        token_embeds: ``(B, L, hidden)`` embeddings of the prompt ids (placeholders at the slot).
        soft: ``(B, n, hidden)`` projected modality embedding(s); cast to the embeddings' device and dtype.
        position: index of the first soft token (``image_position``).

    Returns:
        ``(B, L, hidden)``: prompt before the slot, the soft tokens, prompt after the slot.
    """
    soft = soft.to(device=token_embeds.device, dtype=token_embeds.dtype)
    end = position + soft.shape[1]
    return torch.cat([token_embeds[:, :position], soft, token_embeds[:, end:]], dim=1)


def embed_with_soft_tokens(llm: nn.Module, input_ids: torch.Tensor, soft: torch.Tensor, position: int) -> torch.Tensor:
    """The LLM's input embeddings of ``input_ids`` with ``soft`` spliced in at ``position``.

    Args:
        llm: the (LoRA-wrapped) causal LM; its ``get_input_embeddings()`` embeds the ids.
        input_ids: ``(B, L)`` ids from the conversation tokenizer (training batch or inference prompt).
        soft: ``(B, n, hidden)`` soft tokens.
        position: the batch's ``image_position``.
    """
    return splice_soft_tokens(llm.get_input_embeddings()(input_ids), soft, position)
