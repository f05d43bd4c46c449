"""Dimension compression: learn a projection of an encoder's vectors to fewer dimensions.

- ``model``: ``CompressionAdapter`` (projection + zero-initialised residual MLP), PCA / prefix builders
- ``losses``: DIVE's hinge triplet and head-wise NT-Xent losses; the baselines' ranking and
  similarity-preservation losses
- ``data``: query sets, labeled triplets (qrels + teacher-mined negatives), label-free pseudo-triplets
- ``train``: every method with the same early stopping on validation nDCG@10
- ``io``: safetensors + JSON save/load; ``encoder``: ``CompressedEncoder`` and ``compress_vector_dir``
- ``run``: the whole stage in-process (the Prefect flow in ``flows/compress.py`` wraps it)
"""
from .._lazy import lazy_exports
from .config import METHODS, CompressConfig

# The rest needs torch: loaded on first use (tava_core/_lazy.py), so the CLI checks a config fast.
__getattr__ = lazy_exports(__name__, {
    ".data": ["CompressionData", "QuerySet", "Triplets", "mine_labeled_triplets", "mine_pseudo_triplets",
              "split_queries"],
    ".encoder": ["CompressedEncoder", "compress_vector_dir", "load_compressed_encoder"],
    ".io": ["load_compressor", "save_compressor"],
    ".losses": ["HeadwiseNTXentLoss", "HingeTripletLoss", "SimilarityPreservationLoss", "SoftmaxRankingLoss"],
    ".model": ["CompressionAdapter", "ProjectionHeads", "build_pca", "build_prefix"],
    ".run": ["compress", "fit_all", "load_compression_data", "resolve_vectors", "save_run"],
    ".train": ["MethodResult", "evaluate_model", "train_method"],
})

__all__ = ["METHODS", "CompressConfig", "CompressionData", "QuerySet", "Triplets", "mine_labeled_triplets",
           "mine_pseudo_triplets", "split_queries", "CompressedEncoder", "compress_vector_dir",
           "load_compressed_encoder", "load_compressor", "save_compressor", "HeadwiseNTXentLoss", "HingeTripletLoss",
           "SimilarityPreservationLoss", "SoftmaxRankingLoss", "CompressionAdapter", "ProjectionHeads", "build_pca",
           "build_prefix", "compress", "fit_all", "load_compression_data", "resolve_vectors", "save_run",
           "MethodResult", "evaluate_model", "train_method"]
