"""The one check that vectors an encoder just computed are finite, before they are kept or measured.

Damaged weights (a file overwritten in place: safetensors still parses it) make an encoder give NaN for
every text. Unchecked, such vectors were written as current shards, indexed and scored as if they were
vectors. Called where vectors are persisted or measured (``embed_shard``, the evaluation's corpus and
query vectors, ``tava export``'s agreement), never on a serving path: one ``np.isfinite`` pass per batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import ModelLoadError

if TYPE_CHECKING:
    from .base import Encoder

DAMAGED_HINT = ("its weights (or those of a model it is built on, e.g. an adapter's student) are probably damaged: "
                "a weights file overwritten in place still loads, as tava checks no checksum of model weights "
                "(an adapter's included); restore the model directory from a good copy, or train it again")


def encoder_location(encoder: "Encoder") -> Optional[str]:
    """The directory ``encoder`` was loaded from, when it records one (transformer, static, adapted and
    compressed encoders do)."""
    directory = getattr(encoder, "directory", None)
    return str(directory) if directory is not None else None


def check_finite_vectors(vectors: np.ndarray, encoder: "Encoder", *, model: str | Path | None = None,
                         texts: str = "texts", outcome: str = "nothing was written") -> None:
    """Raise ``ModelLoadError`` when ``vectors`` (just computed by ``encoder``) hold NaN or infinite
    values: how many rows of how many, the encoder's name and model directory (``model``, else where it
    was loaded from), the likely cause and the fix. ``texts`` names what was encoded (e.g. "queries"),
    ``outcome`` what the caller therefore did not do."""
    vectors = np.asarray(vectors)
    if vectors.size == 0 or np.isfinite(vectors).all():
        return
    flat = vectors.reshape(len(vectors), -1) if vectors.ndim > 1 else vectors.reshape(-1, 1)
    bad_rows = int((~np.isfinite(flat)).any(axis=1).sum())
    has_nan = bool(np.isnan(flat).any())
    has_inf = bool(np.isinf(flat).any())
    values = "NaN and infinite values" if has_nan and has_inf else "NaN" if has_nan else "infinite values"
    location = str(model) if model is not None else encoder_location(encoder)
    raise ModelLoadError(
        f"encoder {encoder.name!r} ({type(encoder).__name__}, fingerprint {encoder.fingerprint[:12]}) gave vectors "
        f"holding {values} for {bad_rows} of {len(flat)} {texts}; {outcome}",
        path=location, hint=DAMAGED_HINT)
