"""Losses of the compression stage, each an ``nn.Module`` over compressed (unit) vectors.

- ``HingeTripletLoss`` (DIVE): ``relu(margin - (cos(q, p) - cos(q, n)))``; a satisfied triplet gives
  exactly zero gradient, so training stops moving the space once the ranking is right.
- ``HeadwiseNTXentLoss`` (DIVE): the views of an item under several learned heads are positives,
  other items in the batch negatives (dense self-supervised gradient for every vector in a batch).
- ``SoftmaxRankingLoss`` (Search-Adaptor style): cross-entropy of the positive among candidates.
- ``SimilarityPreservationLoss`` (Matryoshka-Adaptor): compressed pairwise similarities must match
  the full-dimension ones, over each item's top-k neighbours and over all pairs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def anchor_scores(anchor: torch.Tensor, positive: torch.Tensor,
                  negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos(q, p) as (B, 1), cos(q, n) as (B, K)) for unit vectors; ``negatives`` is (B, K, d), one
    pool per anchor, or (K, d), shared by the batch."""
    pos = (anchor * positive).sum(-1, keepdim=True)
    neg = anchor @ negatives.T if negatives.dim() == 2 else torch.einsum("bd,bkd->bk", anchor, negatives)
    return pos, neg


class HingeTripletLoss(nn.Module):
    """``relu(margin - (cos(q, p) - cos(q, n)))``, averaged over the valid negatives; or, with a
    ``temperature``, one hinge per anchor against the soft maximum of its negatives,
    ``temperature * logsumexp(cos(q, n) / temperature)``: the gradient then goes to the negatives
    that outrank the positive (as in a softmax ranking loss) and still stops once the margin is met."""

    def __init__(self, margin: float = 0.1, temperature: float | None = None) -> None:
        super().__init__()
        self.margin, self.temperature = margin, temperature

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                negative_mask: torch.Tensor | None = None) -> torch.Tensor:
        """anchor, positive: (B, d); negatives: (B, K, d) or (K, d) shared; mask (B, K) of valid negatives."""
        pos, neg = anchor_scores(anchor, positive, negatives)
        if self.temperature is not None:
            has_negative = torch.ones_like(pos)
            if negative_mask is not None:
                # a large finite fill, not -inf: an anchor without negatives must not give NaN gradients
                neg = neg.masked_fill(negative_mask <= 0, -1e4)
                has_negative = (negative_mask.sum(1, keepdim=True) > 0).to(pos.dtype)
            hardest = self.temperature * torch.logsumexp(neg / self.temperature, dim=1, keepdim=True)
            violation = F.relu(self.margin - (pos - hardest)) * has_negative
            return violation.sum() / has_negative.sum().clamp(min=1)
        violation = F.relu(self.margin - (pos - neg))
        if negative_mask is not None:
            violation = violation * negative_mask
            return violation.sum() / negative_mask.sum().clamp(min=1)
        return violation.mean()


class HeadwiseNTXentLoss(nn.Module):
    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        """views: one (N, h) unit tensor per head. All H*N views in one similarity matrix: for each
        view, the item's views under the other heads are the positives, every other view a negative."""
        n_heads, n = len(views), len(views[0])
        if n_heads < 2 or n < 2:
            return views[0].new_zeros(())
        stacked = torch.cat(views)                                            # (H*N, h)
        logits = stacked @ stacked.T / self.temperature
        eye = torch.eye(len(stacked), dtype=torch.bool, device=stacked.device)
        logits = logits.masked_fill(eye, float("-inf"))
        items = torch.arange(n, device=stacked.device).repeat(n_heads)
        positive = (items[:, None] == items[None, :]) & ~eye
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        return -(log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1)).mean()


class SoftmaxRankingLoss(nn.Module):
    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                negative_mask: torch.Tensor | None = None) -> torch.Tensor:
        pos, neg = anchor_scores(anchor, positive, negatives)
        if negative_mask is not None:
            neg = neg.masked_fill(negative_mask <= 0, float("-inf"))
        logits = torch.cat([pos, neg], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(anchor), dtype=torch.long, device=anchor.device))


class SimilarityPreservationLoss(nn.Module):
    def __init__(self, top_k: int = 10, pairwise_weight: float = 1.0) -> None:
        super().__init__()
        self.top_k = top_k
        self.pairwise_weight = pairwise_weight

    def forward(self, compressed: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        """compressed (N, d) and full (N, D) unit vectors of the same items."""
        target = full @ full.T
        got = compressed @ compressed.T
        off_diagonal = ~torch.eye(len(full), dtype=torch.bool, device=full.device)
        gap = (got - target).abs()
        k = min(self.top_k, len(full) - 1)
        neighbours = target.masked_fill(~off_diagonal, float("-inf")).topk(k, dim=1).indices
        top_k_loss = gap.gather(1, neighbours).mean()
        return top_k_loss + self.pairwise_weight * gap[off_diagonal].mean()
