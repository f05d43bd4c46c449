"""Configuration of `tava export` (flow ``export-query-encoder``)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from ..config import TavaModel

DEFAULT_MIN_MEAN_COSINE = 0.99


class ExportConfig(TavaModel):
    """Which query encoder to export as one ONNX file, at which precision, and where."""

    model: str = Field(..., description=(
        "The query encoder to export: a Stage A transformer student directory, a Stage B adapter "
        "directory (student + adapter, exported as one graph), a blend directory (one transformer student "
        "(+ adapter) and static students), or a router directory (its query encoder -- any of those -- and its "
        "confidence score in one graph: outputs embeddings and confidence)."))
    precision: Literal["fp32", "int8"] = Field("fp32", description=(
        "'fp32', or 'int8' (ONNX Runtime dynamic quantisation of the matrix multiplies: smaller and "
        "faster, refused when its agreement with the fp32 torch encoder is under the gate)."))
    int8_range: Literal["reduced", "full"] = Field("reduced", description=(
        "int8 weights: 'reduced' (7-bit: safe on every x86 CPU) or 'full' (8-bit: closer to fp32 -- on SciFact's "
        "dev queries with the demo's pair, asymmetric nDCG@10 -0.0039 against -0.0071 and mean cosine 0.9972 "
        "against 0.9959, bench/int8_variants.py; SciFact test, read once: -0.0036 against -0.0065, bench/speed.py) "
        "-- for CPUs with VNNI or AMX only: on others a full-range uint8 x int8 product can saturate, and "
        "loading such a file there warns)."))
    out: Optional[str] = Field(None, description=(
        "Output directory; empty = <home>/artifacts/exports/<encoder>-<fingerprint>-<precision>."))
    teacher: Optional[str] = Field(None, description=(
        "The teacher whose document vectors the exported queries are searched against (recorded in "
        "the card); empty = what the adapter's or student's own records name."))
    min_mean_cosine: float = Field(DEFAULT_MIN_MEAN_COSINE, ge=-1.0, le=1.0, description=(
        "Gate: the export is refused (nothing saved) when the mean cosine between its vectors and the "
        "fp32 torch encoder's on the agreement sample is under this."))
    sample_file: Optional[str] = Field(None, description=(
        "Texts for the agreement check, one per line (e.g. real queries); empty = a built-in sample."))
    max_sample: int = Field(512, ge=8, le=100_000, description="Use at most this many texts of the sample file.")
