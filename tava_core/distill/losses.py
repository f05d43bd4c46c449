"""Distillation losses: pull student vectors onto the teacher's, optionally matching in-batch geometry."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DistillationLoss(nn.Module):
    """``alpha_cos * (1 - cos) + alpha_mse * mse + alpha_sim * KL(teacher sims || student sims)
    + alpha_cross * KL(teacher sims || student-to-teacher sims)``.

    - ``1 - cos``: direction of each student vector against its teacher vector.
    - ``mse``: squared error summed over dimensions and averaged over the batch (so it is on the
      scale of ``1 - cos`` whatever the dimension); it also pins the norm, which matters for a
      student used without its final normalisation.
    - similarity term: each row of the in-batch cosine-similarity matrix, softmaxed at
      ``temperature``, of the student should match the teacher's (the ranking geometry
      retrieval cares about). The diagonal is kept: it anchors each row.
    - cross-similarity term: each student vector's softmaxed similarities to the batch's *teacher*
      vectors should match the teacher vector's own. This is the deployment: a student query searched
      against documents the teacher embedded, so it scores the ranking the student's query induces
      over teacher vectors, not over other student vectors (which no one ever searches). Unlike the
      symmetric term it is not rotation-invariant: it also pulls the student into the teacher's space.
    - neighbour-ranking term: the same comparison over ``candidates``, each text's own set of hard
      teacher vectors (its nearest training texts under the teacher, found once before training)
      instead of the batch's. Random in-batch texts are easy to tell apart; what a search gets
      wrong is the order among a query's near neighbours, and that order is what nDCG@10 scores.

    ``forward`` returns the total and a dict of the parts (floats, for logging).
    """

    def __init__(self, alpha_cos: float = 1.0, alpha_mse: float = 1.0, temperature: float = 0.05,
                 alpha_sim: float = 0.0, alpha_cross: float = 0.0, alpha_rank: float = 0.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.alpha_cos = alpha_cos
        self.alpha_mse = alpha_mse
        self.temperature = temperature
        self.alpha_sim = alpha_sim
        self.alpha_cross = alpha_cross
        self.alpha_rank = alpha_rank

    def _softmax_kl(self, student_cosines: torch.Tensor, teacher_cosines: torch.Tensor) -> torch.Tensor:
        """KL(teacher || student) of row-softmaxed cosines at the temperature, batch mean."""
        student_logp = F.log_softmax(student_cosines / self.temperature, dim=-1)
        teacher_logp = F.log_softmax(teacher_cosines / self.temperature, dim=-1)
        return F.kl_div(student_logp, teacher_logp, reduction="batchmean", log_target=True)

    def _ranking_kl(self, queries: torch.Tensor, keys: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Row i compares ``softmax(t_i . t_j / T)`` with ``softmax(q_i . k_j / T)`` over the batch's j."""
        t = F.normalize(teacher, dim=-1)
        return self._softmax_kl(F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T, t @ t.T)

    def similarity_kl(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """KL(teacher || student) of row-softmaxed in-batch cosine similarities, batch mean."""
        return self._ranking_kl(student, student, teacher)

    def cross_similarity_kl(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The same with the student's similarities taken to the batch's teacher vectors: row i compares
        ``softmax(t_i . t_j / T)`` with ``softmax(s_i . t_j / T)``."""
        return self._ranking_kl(student, teacher, teacher)

    def neighbour_ranking_kl(self, student: torch.Tensor, teacher: torch.Tensor,
                             candidates: torch.Tensor) -> torch.Tensor:
        """KL(teacher || student) over each row's own candidates (batch, k, dim): row i compares
        ``softmax(t_i . c_ij / T)`` with ``softmax(s_i . c_ij / T)`` over its k candidates."""
        c = F.normalize(candidates, dim=-1)
        return self._softmax_kl(torch.einsum("bd,bkd->bk", F.normalize(student, dim=-1), c),
                                torch.einsum("bd,bkd->bk", F.normalize(teacher, dim=-1), c))

    def terms(self, student: torch.Tensor, teacher: torch.Tensor,
              candidates: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Each active term, unweighted, as a tensor on the student's device (nothing is copied to the
        host here: ``forward`` does that, once per step, for the logs)."""
        teacher = teacher.to(student.dtype)
        parts: dict[str, torch.Tensor] = {}
        if self.alpha_cos:
            parts["cos"] = (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
        if self.alpha_mse:
            parts["mse"] = (student - teacher).pow(2).sum(-1).mean()
        if self.alpha_sim:
            parts["sim_kl"] = self.similarity_kl(student, teacher)
        if self.alpha_cross:
            parts["cross_kl"] = self.cross_similarity_kl(student, teacher)
        if self.alpha_rank:
            if candidates is None:
                raise ValueError("alpha_rank > 0 needs each row's candidates (batch, k, dim)")
            parts["rank_kl"] = self.neighbour_ranking_kl(student, teacher, candidates.to(student.dtype))
        return parts

    def total(self, parts: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """The weighted sum of ``terms``' output (a zero on ``like``'s device when no term is active)."""
        weights = {"cos": self.alpha_cos, "mse": self.alpha_mse, "sim_kl": self.alpha_sim,
                   "cross_kl": self.alpha_cross, "rank_kl": self.alpha_rank}
        total = like.new_zeros(())
        for name, value in parts.items():
            total = total + weights[name] * value
        return total

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                candidates: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """``candidates`` (batch, k, dim): each row's hard teacher vectors, needed when alpha_rank > 0."""
        parts = self.terms(student, teacher, candidates)
        return self.total(parts, student), {name: float(value.detach()) for name, value in parts.items()}
