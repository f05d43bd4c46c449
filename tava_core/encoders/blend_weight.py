"""A blend's weight, chosen per corpus without labels.

``tava run`` blends student + adapter with a static student (``blend.py``). How much each should weigh
depends on the corpus: where the static student is poor (queries unlike the documents it learned from)
the transformer member should weigh more. The rule: the weight whose blended vectors of short span views
of the corpus's documents (query stand-ins, as the router calibrates on) lie closest to the teacher's
vectors of the same views -- the mean cosine, the primary metric Stage A and Stage B already select by.
On the two dev corpora it picked the weight labelled nDCG@10 prefers (SciFact's 809 train queries with
all-mpnet-base-v2: 0.6, 0.977 of the teacher against 0.971 at 0.5; the built-in data with
all-MiniLM-L6-v2: 0.7, 1.027 against 1.021): docs/mpnet.md, bench/results/blend_weight_dev.json.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from ..adapter.baselines import normalize_rows
from ..config import EncoderSpec
from .base import Encoder

if TYPE_CHECKING:
    from ..home import TavaHome

# the transformer member's share; 0 and 1 are no blend (a zero weight is a member to drop)
WEIGHTS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))
VIEWS = 600        # span views scored (the teacher encodes them once: seconds for MiniLM, ~1 minute for mpnet)
VIEW_SEED = 4321   # not Stage A's spans (seed 0) nor the router's calibration views (1234)


@dataclass
class WeightChoice:
    """The chosen weight of the first member (the second gets ``1 - weight``) and the mean cosine to the
    teacher at every weight tried."""

    weight: float
    cosine: dict[float, float] = field(default_factory=dict)
    views: int = 0


def choose_weight(first: np.ndarray, second: np.ndarray, teacher: np.ndarray,
                  weights: Sequence[float] = WEIGHTS) -> WeightChoice:
    """The weight ``w`` in ``weights`` whose ``normalize(w * unit(first) + (1 - w) * unit(second))`` has the
    highest mean cosine to ``teacher`` (rows: the same texts); ties go to the larger ``w``."""
    if not len(first) or first.shape != second.shape or first.shape != teacher.shape:
        raise ValueError(f"need the same non-empty texts from both members and the teacher, got {first.shape}, "
                         f"{second.shape}, {teacher.shape}")
    if not weights or any(not 0.0 < w < 1.0 for w in weights):
        raise ValueError(f"weights must lie in (0, 1), got {list(weights)}")
    a, b, t = (normalize_rows(np.asarray(x, dtype=np.float32)) for x in (first, second, teacher))
    cosine = {float(w): float(np.mean(np.sum(normalize_rows(w * a + (1.0 - w) * b) * t, axis=1))) for w in weights}
    best = max(cosine, key=lambda w: (round(cosine[w], 6), w))
    return WeightChoice(weight=best, cosine=cosine, views=len(first))


def choose_blend_weight(first: Encoder, second: Encoder, teacher: Encoder, texts: Sequence[str],
                        weights: Sequence[float] = WEIGHTS) -> WeightChoice:
    """``choose_weight`` on ``texts`` (query stand-ins, encoded as queries by all three)."""
    views = list(texts)
    return choose_weight(first.encode(views, kind="query"), second.encode(views, kind="query"),
                         teacher.encode(views, kind="query"), weights)


def choose_for_corpus(first: str, second: str, teacher: EncoderSpec, dataset: str, split: str, record: Path,
                      home: "TavaHome", judgements: Optional[str] = None) -> dict[str, Any]:
    """``choose_blend_weight`` for the members at ``first`` and ``second`` on ``VIEWS`` span views of
    ``dataset``'s documents, written to ``record`` (JSON) and reused from there when members, teacher and
    corpus are the same (the teacher's encoding of the views is the cost)."""
    from ..distill.spans import sample_span_views
    from ..evaluate.data import load_retrieval_data
    from ..io import write_json
    from ..reuse import RUN_KEY, finished_record, run_key
    from . import load_encoder

    started = time.perf_counter()
    members = [load_encoder(first, cache=False), load_encoder(second, cache=False)]
    teacher_encoder = load_encoder(teacher)
    data = load_retrieval_data(dataset, split, home, judgements)
    key = run_key({"members": [m.fingerprint for m in members], "teacher": teacher_encoder.fingerprint,
                   "corpus": data.corpus_checksum, "views": VIEWS, "seed": VIEW_SEED, "weights": list(WEIGHTS)})
    if (done := finished_record(record, key)) is not None:
        return {**done, "reused": True}
    spans = sample_span_views(data.corpus_ids, data.document_texts, VIEWS, VIEW_SEED)
    choice = choose_blend_weight(members[0], members[1], teacher_encoder, spans)
    result = {RUN_KEY: key, "weight": choice.weight, "views": choice.views,
              "mean_cosine_to_teacher": {f"{w:.1f}": round(c, 6) for w, c in choice.cosine.items()},
              "rule": "the weight of the first member whose blended vectors of span views of the corpus lie closest "
                      "to the teacher's (mean cosine); the second member gets 1 - weight",
              "seconds": round(time.perf_counter() - started, 2)}
    write_json(record, result)
    return {**result, "reused": False}
