"""The output head in fp32 on a lower-precision model: the same weights and last hidden states,
logits not rounded to the model's dtype (bf16 logits lie on a grid of 0.125 nats at magnitudes
16-32, so a one-token readout's probabilities take only a few values)."""

from __future__ import annotations

import torch


class Fp32Head(torch.nn.Module):
    """Replaces a model's output embeddings: an fp32 copy of their weights (and bias), applied
    to the hidden states cast to fp32; returns fp32 logits."""

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        bias = getattr(head, "bias", None)
        self.weight = torch.nn.Parameter(head.weight.detach().float(), requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float(),
                                                                  requires_grad=False)  # fmt: skip

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)


def use_fp32_head(model) -> bool:
    """Swap the model's output embeddings for an Fp32Head (its own forward and `generate` then
    compute fp32 logits too); False where they are fp32 already."""
    head = model.get_output_embeddings()
    if head.weight.dtype == torch.float32:
        return False
    model.set_output_embeddings(Fp32Head(head).to(head.weight.device))
    return True
