"""Corpus ingestion: BEIR directories, JSONL(.gz), Parquet, CSV/TSV and .txt folders into text
shards with a manifest (see ``pipeline`` for the steps, ``readers`` for the formats)."""
from .pipeline import (
                       FORMATS,
                       IngestReport,
                       content_id,
                       dataset_exists,
                       dataset_name,
                       detect_format,
                       ingest,
                       normalize_text,
                       plan_source,
                       source_signature,
)
from .readers import BadRecords, Fields, RawRecord

__all__ = ["FORMATS", "IngestReport", "content_id", "dataset_exists", "dataset_name", "detect_format", "ingest",
           "normalize_text", "plan_source", "source_signature", "BadRecords", "Fields", "RawRecord"]
