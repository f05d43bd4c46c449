"""Dimension compression: learn a projection of an encoder's vectors to fewer dimensions.

- ``model``: ``CompressionAdapter`` (projection + zero-initialised residual MLP), PCA / prefix builders
- ``losses``: DIVE's hinge triplet and head-wise NT-Xent losses; the baselines' ranking and
  similarity-preservation losses
- ``data``: query sets, labeled triplets (qrels + teacher-mined negatives), label-free pseudo-triplets
- ``trainer``: every method with the same early stopping on validation nDCG@10 (the training engine)
- ``io``: safetensors + JSON save/load; ``encoder``: ``CompressedEncoder`` (stored vectors: `tava translate`)
- ``run``: the stage's steps (``resolve_vectors``, ``train_compressors``), chained by ``flows/compress.py``
"""
from .._lazy import lazy_exports
from .config import METHODS, CompressConfig

# The rest needs torch: loaded on first use (tava_core/_lazy.py), so the CLI checks a config fast.
__getattr__ = lazy_exports(__name__, {
    ".data": ["CompressionData", "QuerySet", "Triplets", "mine_labeled_triplets", "mine_pseudo_triplets",
              "split_queries"],
    ".encoder": ["CompressedEncoder", "load_compressed_encoder"],
    ".io": ["load_compressor", "save_compressor"],
    ".losses": ["HeadwiseNTXentLoss", "HingeTripletLoss", "SimilarityPreservationLoss", "SoftmaxRankingLoss"],
    ".model": ["CompressionAdapter", "ProjectionHeads", "build_pca", "build_prefix"],
    ".run": ["fit_all", "load_compression_data", "resolve_vectors", "save_run", "train_compressors"],
    ".trainer": ["MethodResult", "evaluate_model", "train_method"],
})

__all__ = ["METHODS", "CompressConfig", "CompressionData", "QuerySet", "Triplets", "mine_labeled_triplets",
           "mine_pseudo_triplets", "split_queries", "CompressedEncoder",
           "load_compressed_encoder", "load_compressor", "save_compressor", "HeadwiseNTXentLoss", "HingeTripletLoss",
           "SimilarityPreservationLoss", "SoftmaxRankingLoss", "CompressionAdapter", "ProjectionHeads", "build_pca",
           "build_prefix", "fit_all", "load_compression_data", "resolve_vectors", "save_run", "train_compressors",
           "MethodResult", "evaluate_model", "train_method"]
