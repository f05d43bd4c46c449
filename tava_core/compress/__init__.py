"""Dimension compression: learn a projection of an encoder's vectors to fewer dimensions.

- ``model``: ``CompressionAdapter`` (projection + zero-initialised residual MLP), PCA / prefix builders
- ``losses``: DIVE's hinge triplet and head-wise NT-Xent losses; the baselines' ranking and
  similarity-preservation losses
- ``data``: query sets, labeled triplets (qrels + teacher-mined negatives), label-free pseudo-triplets
- ``trainer``: every method with the same early stopping on validation nDCG@10 (the training engine)
- ``io``: safetensors + JSON save/load; ``encoder``: ``CompressedEncoder`` and ``compress_vector_dir``
- ``run``: the stage's steps (``resolve_vectors``, ``train_compressors``), chained by ``flows/compress.py``
"""
from .config import METHODS, CompressConfig
from .data import CompressionData, QuerySet, Triplets, mine_labeled_triplets, mine_pseudo_triplets, split_queries
from .encoder import CompressedEncoder, compress_vector_dir, load_compressed_encoder
from .io import load_compressor, save_compressor
from .losses import HeadwiseNTXentLoss, HingeTripletLoss, SimilarityPreservationLoss, SoftmaxRankingLoss
from .model import CompressionAdapter, ProjectionHeads, build_pca, build_prefix
from .run import fit_all, load_compression_data, resolve_vectors, save_run, train_compressors
from .trainer import MethodResult, evaluate_model, train_method

__all__ = ["METHODS", "CompressConfig", "CompressionData", "QuerySet", "Triplets", "mine_labeled_triplets",
           "mine_pseudo_triplets", "split_queries", "CompressedEncoder", "compress_vector_dir",
           "load_compressed_encoder", "load_compressor", "save_compressor", "HeadwiseNTXentLoss", "HingeTripletLoss",
           "SimilarityPreservationLoss", "SoftmaxRankingLoss", "CompressionAdapter", "ProjectionHeads", "build_pca",
           "build_prefix", "fit_all", "load_compression_data", "resolve_vectors", "save_run", "train_compressors",
           "MethodResult", "evaluate_model", "train_method"]
