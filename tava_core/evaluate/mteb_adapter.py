"""mteb glue: a retrieval task over local data and an encoder that routes queries and documents.

mteb 2.x only loads retrieval data from the Hugging Face hub, so `LocalRetrievalTask` overrides
`load_data` with a `RetrievalSplitData` built from a `RetrievalData`. `RoutingEncoder` sends
`PromptType.query` batches to one tava encoder and documents to another (the asymmetric
adapted/teacher mode), and answers from precomputed vectors where it has them, so the corpus is
encoded once per encoder, not once per mode.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal, Mapping

import numpy as np

from ..encoders import Encoder
from ..home import slug
from .data import RetrievalData

if TYPE_CHECKING:
    from pathlib import Path

    from mteb.types import EncodeKwargs

log = logging.getLogger(__name__)


def make_task(data: RetrievalData):
    """An mteb retrieval task (class and instance) whose data is ``data``'s split."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    metadata = TaskMetadata(
        name=f"tava-{slug(data.name)}",
        dataset={"path": str(data.source), "revision": data.corpus_checksum[:12]},
        description=f"Local BEIR-style retrieval set {data.name} ({data.source}), read by tava.",
        reference=None,
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[data.split],
        eval_langs=["eng-Latn"],
        main_score="ndcg_at_10",
        date=None,
        domains=None,
        task_subtypes=None,
        license="not specified",
        annotations_creators=None,
        dialect=[],
        sample_creation="found",
        bibtex_citation="",
        is_public=False,
    )

    judged_self = any(data.qrels.get(qid, {}).get(qid, 0) > 0 for qid in data.query_ids)

    class LocalRetrievalTask(AbsTaskRetrieval):
        """Retrieval over a local corpus/queries/qrels already read and checked by tava."""

        # as tava's numpy metrics (and BEIR): a query's own id is not among its results. mteb drops it
        # even when judged relevant, which tava does not: a set with such pairs keeps them in mteb too
        # (a set with both kinds would show as an mteb/numpy disagreement in the report)
        ignore_identical_ids = not judged_self

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            corpus = Dataset.from_dict({"id": data.corpus_ids, "title": data.corpus_titles,
                                        "text": data.corpus_texts})
            queries = Dataset.from_dict({"id": data.query_ids, "text": data.query_texts})
            relevant = {qid: dict(docs) for qid, docs in data.qrels.items()}
            self.dataset = {"default": {data.split: RetrievalSplitData(
                corpus=corpus, queries=queries, relevant_docs=relevant, top_ranked=None)}}
            self.data_loaded = True

    LocalRetrievalTask.metadata = metadata
    return LocalRetrievalTask()


def make_routing_encoder(query_encoder: Encoder, document_encoder: Encoder, *, name: str, batch_size: int,
                         query_vectors: Mapping[str, np.ndarray] | None = None,
                         document_vectors: Mapping[str, np.ndarray] | None = None):
    """An mteb encoder: queries -> ``query_encoder``, documents -> ``document_encoder``.

    ``query_vectors`` / ``document_vectors`` map a text (as mteb passes it) to its precomputed
    vector; texts not found there are encoded by the routed encoder.
    """
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction
    from mteb.types import PromptType

    from ..encoders import combine_fingerprint

    class RoutingEncoder(AbsEncoder):
        """mteb encoder over two tava encoders (one per prompt type)."""

        def __init__(self) -> None:
            self.query_encoder = query_encoder
            self.document_encoder = document_encoder
            self.calls: list[tuple[str, str, int, int]] = []   # (kind, encoder name, texts, cache hits)
            self.caches = {"query": dict(query_vectors or {}), "document": dict(document_vectors or {})}
            self.mteb_model_meta = ModelMeta.create_empty(overwrites={
                "name": f"tava/{slug(name)}",
                "revision": combine_fingerprint(query_encoder.fingerprint, document_encoder.fingerprint)[:12],
                "embed_dim": document_encoder.dim,
                "similarity_fn_name": ScoringFunction.COSINE,
                "framework": ["PyTorch"],
                "languages": ["eng-Latn"],
                "open_weights": True,
                "use_instructions": False,
            })

        def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str,
                   prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
            texts: list[str] = [text for batch in inputs for text in batch["text"]]
            kind: Literal["query", "document"] = "query" if prompt_type == PromptType.query else "document"
            encoder = self.query_encoder if kind == "query" else self.document_encoder
            cache = self.caches[kind]
            out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
            missing = [i for i, text in enumerate(texts) if text not in cache]
            for i, text in enumerate(texts):
                if text in cache:
                    out[i] = cache[text]
            if missing:
                out[missing] = encoder.encode([texts[i] for i in missing], kind=kind, batch_size=batch_size)
            self.calls.append((kind, encoder.name, len(texts), len(texts) - len(missing)))
            return out

    return RoutingEncoder()


def run_mteb(task, model, output_dir: "Path", batch_size: int) -> dict[str, float]:
    """Evaluate ``model`` on ``task``; the TaskResult lands in ``output_dir`` (mteb ResultCache layout).

    Returns the split's scores (mteb's names: ndcg_at_10, recall_at_100, mrr_at_10, ...).
    """
    import mteb
    from datasets.utils import logging as datasets_logging

    cache = mteb.ResultCache(cache_path=output_dir)
    # mteb's own bars ("Searching corpus chunks", and the datasets library's "Standardizing text corpus
    # format") printed two or three lines per evaluated system over tava's: the vectors are already
    # computed (tava's bars show that work), so mteb's pass is seconds of ranking
    encode_kwargs: EncodeKwargs = {"batch_size": batch_size, "show_progress_bar": False}
    bars_were_on = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        result = mteb.evaluate(model, task, cache=cache, overwrite_strategy="always",
                               encode_kwargs=encode_kwargs, show_progress_bar=False)
    finally:
        if bars_were_on:
            datasets_logging.enable_progress_bar()
    task_result = result.task_results[0]
    split = task.metadata.eval_splits[0]
    return dict(task_result.scores[split][0])
