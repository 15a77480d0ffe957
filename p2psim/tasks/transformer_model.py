"""The byte-level transformer's torch modules: imported when `TransformerLM` builds its model, not when a scenario names it.

Kept apart from `transformer_lm.py` because a class deriving from `torch.nn.Module` needs
torch when it is defined, and a scenario's description and validation must not load torch
(issue 12: a CLI that starts fast).
"""

from __future__ import annotations

import math

import torch

from p2psim.tasks.transformer_lm import MLP_RATIO, VOCAB

__all__ = ["Block", "ByteTransformer", "CausalSelfAttention"]


class CausalSelfAttention(torch.nn.Module):
    """Multi-head attention of each position over itself and earlier ones (softmax(q k^T / sqrt(d_head)) v)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(width, 3 * width, device="meta")
        self.proj = torch.nn.Linear(width, width, device="meta")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, length, width = h.shape
        q, k, v = self.qkv(h).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        # the causal mask is built from the input's device, not kept as a buffer: the template lives on "meta"
        # and functional_call passes parameters only; explicit ops, not scaled_dot_product_attention, whose
        # CPU kernel has no vmap batching rule (torch 2.13) and would loop over the peers' rows
        future = torch.full((length, length), float("-inf"), device=h.device).triu(1)
        attended = (q @ k.transpose(-2, -1) / math.sqrt(width // self.heads) + future).softmax(dim=-1) @ v
        return self.proj(attended.transpose(1, 2).reshape(batch, length, width))


class Block(torch.nn.Module):
    """Pre-norm transformer block: h + attention(LN(h)), then h + MLP(LN(h))."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(width, device="meta")
        self.attention = CausalSelfAttention(width, heads)
        self.ln2 = torch.nn.LayerNorm(width, device="meta")
        self.fc = torch.nn.Linear(width, MLP_RATIO * width, device="meta")
        self.out = torch.nn.Linear(MLP_RATIO * width, width, device="meta")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attention(self.ln1(h))
        return h + self.out(torch.nn.functional.gelu(self.fc(self.ln2(h))))


class ByteTransformer(torch.nn.Module):
    """Bytes [batch, length] -> next-byte logits [batch, length, 256]."""

    def __init__(self, layers: int, width: int, heads: int, context: int):
        super().__init__()
        self.tokens = torch.nn.Embedding(VOCAB, width, device="meta")
        self.positions = torch.nn.Embedding(context, width, device="meta")
        self.blocks = torch.nn.Sequential(*[Block(width, heads) for _ in range(layers)])
        self.ln = torch.nn.LayerNorm(width, device="meta")
        self.head = torch.nn.Linear(width, VOCAB, device="meta")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.long()  # a size estimate passes a float stand-in of the right shape
        where = torch.arange(tokens.shape[-1], device=x.device)
        return self.head(self.ln(self.blocks(self.tokens(tokens) + self.positions(where))))
