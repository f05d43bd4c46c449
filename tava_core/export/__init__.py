"""ONNX export: the encoder graph (``graph``), the per-fingerprint cache behind the onnx encoder
backend (``cache``), and `tava export`'s self-contained query encoder (``query_encoder``; run it
with onnxruntime + tokenizers only, as ``standalone`` does). Kept import-light: nothing here
imports torch until a function that needs it runs."""
