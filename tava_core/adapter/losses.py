"""Losses of the adapter, each an ``nn.Module`` holding its own settings.

Inputs are batches of vectors ``(batch, dim)``; every loss returns a scalar tensor.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities of the rows of ``x``."""
    x = F.normalize(x, dim=-1)
    return x @ x.T


class AdversarialLoss(nn.Module):
    """GAN objectives on discriminator logits: lsgan (least squares, default), vanilla, hinge, wgan."""

    def __init__(self, kind: str = "lsgan") -> None:
        super().__init__()
        if kind not in {"lsgan", "vanilla", "hinge", "wgan"}:
            raise ValueError(f"unknown adversarial loss {kind!r}")
        self.kind = kind

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "lsgan":
            return 0.5 * (((real_logits - 1) ** 2).mean() + (fake_logits ** 2).mean())
        if self.kind == "vanilla":
            return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                    + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        if self.kind == "hinge":
            return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        return fake_logits.mean() - real_logits.mean()

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "lsgan":
            return 0.5 * ((fake_logits - 1) ** 2).mean()
        if self.kind == "vanilla":
            return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        return -fake_logits.mean()  # hinge and wgan

    def forward(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.generator_loss(fake_logits)


class GradientPenalty(nn.Module):
    """R1 (squared gradient norm on real samples) or WGAN-GP ((||grad|| - 1)^2 on interpolates)."""

    def __init__(self, kind: str = "r1", weight: float = 1.0) -> None:
        super().__init__()
        if kind not in {"r1", "wgan-gp", "none"}:
            raise ValueError(f"unknown gradient penalty {kind!r}")
        self.kind, self.weight = kind, float(weight)

    def forward(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.kind == "none" or self.weight == 0:
            return real.new_zeros(())
        if self.kind == "r1":
            points = real.detach().requires_grad_(True)
        else:
            alpha = torch.rand(real.shape[0], 1, device=real.device)
            points = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(discriminator(points).sum(), points, create_graph=True)
        norms = grad.norm(dim=-1)
        penalty = 0.5 * (norms ** 2).mean() if self.kind == "r1" else ((norms - 1) ** 2).mean()
        return self.weight * penalty


class VectorSpacePreservationLoss(nn.Module):
    """vec2vec's VSP: the batch's pairwise cosine matrix should not change under the mapping.

    Zero for any map that preserves angles (an isometry, a rotation, a semi-orthogonal embedding)."""

    def __init__(self, norm: str = "l2") -> None:
        super().__init__()
        self.norm = norm

    def forward(self, source: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
        gap = cosine_matrix(source) - cosine_matrix(mapped)
        return gap.abs().mean() if self.norm == "l1" else (gap ** 2).mean()


class CycleConsistencyLoss(nn.Module):
    """A round trip (student -> teacher -> student) must return the original vector:
    squared distance, summed over dimensions, averaged over the batch."""

    def forward(self, original: torch.Tensor, round_trip: torch.Tensor) -> torch.Tensor:
        return ((original - round_trip) ** 2).sum(-1).mean()


class ReconstructionLoss(CycleConsistencyLoss):
    """Encoding into the shared latent space and decoding back must return the original vector."""


class PairedSupervisionLoss(nn.Module):
    """When texts are paired: cosine and squared-error gaps to the true teacher vector, plus an
    in-batch InfoNCE term that asks each mapped vector to be nearest its own teacher vector
    (what retrieval and vec2vec's rank metrics measure)."""

    def __init__(self, cosine_weight: float = 1.0, mse_weight: float = 1.0, contrastive_weight: float = 0.0,
                 temperature: float = 0.05) -> None:
        super().__init__()
        self.cosine_weight, self.mse_weight = float(cosine_weight), float(mse_weight)
        self.contrastive_weight, self.temperature = float(contrastive_weight), float(temperature)

    def parts(self, mapped: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        cosine = 1 - F.cosine_similarity(mapped, target, dim=-1).mean()
        mse = ((mapped - target) ** 2).sum(-1).mean()
        out = {"paired_cosine": cosine, "paired_mse": mse}
        if self.contrastive_weight > 0:
            logits = F.normalize(mapped, dim=-1) @ F.normalize(target, dim=-1).T / self.temperature
            out["contrastive"] = F.cross_entropy(logits, torch.arange(len(mapped), device=mapped.device))
        return out

    def forward(self, mapped: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = self.parts(mapped, target)
        total = self.cosine_weight * parts["paired_cosine"] + self.mse_weight * parts["paired_mse"]
        if "contrastive" in parts:
            total = total + self.contrastive_weight * parts["contrastive"]
        return total


class RankingDistillationLoss(nn.Module):
    """Asymmetric search, learned directly: a mapped vector must rank a set of teacher "documents"
    (other texts' teacher vectors) as the true teacher vector does. KL divergence between the
    softmax of the teacher's similarities and the mapped vector's, at ``temperature``; each row's
    own teacher vector is left out (that is InfoNCE's job), so only the ranking of the others counts."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, mapped: torch.Tensor, target: torch.Tensor, documents: torch.Tensor,
                own: torch.Tensor | None = None) -> torch.Tensor:
        """``documents`` (m, dim) teacher vectors; ``own[i]`` = the column of row i's own text, or -1."""
        docs = F.normalize(documents, dim=-1)
        student_logits = F.normalize(mapped, dim=-1) @ docs.T / self.temperature
        teacher_logits = F.normalize(target, dim=-1) @ docs.T / self.temperature
        if own is not None:
            rows = torch.nonzero(own >= 0).squeeze(-1)
            student_logits = student_logits.index_put((rows, own[rows]), torch.tensor(-1e4))
            teacher_logits = teacher_logits.index_put((rows, own[rows]), torch.tensor(-1e4))
        return F.kl_div(F.log_softmax(student_logits, -1), F.log_softmax(teacher_logits, -1), log_target=True,
                        reduction="batchmean")


class ProximalLoss(nn.Module):
    """Weight decay towards the start instead of towards zero (L2-SP): the summed squared distance of
    the trainable parameters from a snapshot taken when the loss is built (the closed-form start of the
    skip path, the zero head of the correction, the blocks' initial weights; or a warm-start adapter's).

    A map fitted on generic pairs can fit its held-out pairs better while moving out-of-domain queries
    away from where the closed form put them; a pull towards the start bounds how far it may move."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.anchors = [p.detach().clone() for p in self.params]

    def forward(self) -> torch.Tensor:
        return torch.stack([((p - a) ** 2).sum() for p, a in zip(self.params, self.anchors, strict=True)]).sum()
