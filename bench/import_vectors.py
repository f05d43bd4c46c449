"""Documents the teacher already embedded: `tava embed --import-vectors` against encoding them again.

Side by side in one run, through the CLI a user runs, each in a fresh tava home with SciFact ingested:

- ``minilm``: `tava embed` of SciFact's 5,183 documents with all-MiniLM-L6-v2, then the same vectors
  exported (id + vector, float16, as a store might keep them) and imported into another fresh home with
  `tava embed --import-vectors`. Wall seconds of each command, and whether the imported shards equal the
  encoded ones (max |diff|, float16 storage).
- ``mpnet`` (with the `mpnet` extra): importing ../shared/data's all-mpnet-base-v2 vectors of the corpus
  (wall seconds, the encoder's agreement on the sampled texts), against the teacher's encoding of a seeded
  sample of ``--mpnet-sample`` documents timed in the same run (documents per second, and the whole
  corpus at that rate: encoding all of it here takes over an hour).

    python bench/import_vectors.py                      # -> bench/results/import_vectors.json
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from shared_data import MPNET_VECTORS, ROOT, SCIFACT, cpu_info, write_result  # noqa: E402  (sets sys.path)

OUT = ROOT / "bench" / "results" / "import_vectors.json"
TAVA = [sys.executable, "-m", "flows.cli"]


def _tava(home: Path, *args: str) -> float:
    """Run `tava --home HOME ARGS` from the project; returns wall seconds (raises on failure)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(home / "prefect")}
    env.pop("PREFECT_API_URL", None)
    start = time.perf_counter()
    done = subprocess.run([*TAVA, "--home", str(home), *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"tava {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return round(seconds, 1)


def _corpus_vectors(home: Path, encoder_dir_glob: str) -> tuple[list[str], np.ndarray]:
    from tava_core.manifest import read_vector_dir

    (directory,) = sorted((home / "vectors" / "scifact" / "corpus").glob(encoder_dir_glob))
    ids, vectors, _ = read_vector_dir(directory)
    return ids, vectors


def _export(path: Path, ids: list[str], vectors: np.ndarray) -> Path:
    """A store's export: id + float16 fixed-size lists, in a shuffled order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    order = np.random.default_rng(0).permutation(len(ids))
    flat = pa.array(vectors[order].astype(np.float16).reshape(-1), pa.float16())
    pq.write_table(pa.table({"id": [ids[i] for i in order],
                             "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}), path)
    return path


def minilm(work: Path) -> dict[str, Any]:
    encoded_home, imported_home = work / "encoded", work / "imported"
    for home in (encoded_home, imported_home):
        _tava(home, "ingest", str(SCIFACT), "--name", "scifact")
    encode_s = _tava(encoded_home, "embed", "--dataset", "scifact", "--collections", "corpus",
                     "--encoder", "all-MiniLM-L6-v2")
    ids, encoded = _corpus_vectors(encoded_home, "all-MiniLM-L6-v2-*")
    store = _export(work / "minilm-store.parquet", ids, encoded)
    import_s = _tava(imported_home, "embed", "--dataset", "scifact", "--collections", "corpus",
                     "--encoder", "all-MiniLM-L6-v2", "--import-vectors", str(store))
    again_s = _tava(imported_home, "embed", "--dataset", "scifact", "--encoder", "all-MiniLM-L6-v2",
                    "--collections", "corpus")
    imported_ids, imported = _corpus_vectors(imported_home, "all-MiniLM-L6-v2-*")
    return {"documents": len(ids), "encode_seconds": encode_s, "import_seconds": import_s,
            "speedup": round(encode_s / import_s, 1), "plain_embed_after_import_seconds": again_s,
            "same_ids_in_order": imported_ids == ids,
            "max_abs_diff_imported_vs_encoded": float(np.abs(imported - encoded).max())}


def mpnet(work: Path, sample: int) -> dict[str, Any]:
    from tava_core.embed import plan_collection
    from tava_core.encoders import load_encoder
    from tava_core.home import TavaHome
    from tava_core.imported import read_vector_source, verify_source
    from tava_core.io import document_texts, read_text_shard
    from tava_core.manifest import load_dataset_manifest

    home = work / "mpnet"
    _tava(home, "ingest", str(SCIFACT), "--name", "scifact")
    store = MPNET_VECTORS / "scifact" / "corpus.parquet"
    import_s = _tava(home, "embed", "--dataset", "scifact", "--collections", "corpus",
                     "--encoder", "all-mpnet-base-v2", "--import-vectors", str(store))
    tava_home = TavaHome(home)
    dataset = tava_home.dataset_dir("scifact")
    manifest = load_dataset_manifest(dataset)
    encoder = load_encoder("all-mpnet-base-v2")
    _, jobs = plan_collection(tava_home, dataset, manifest, "corpus", encoder)
    agreement = verify_source(read_vector_source(store), jobs, encoder, seed=1)   # another sample than the CLI's
    texts = [t for shard in manifest.collections["corpus"].shards
             for t in document_texts(read_text_shard(dataset / shard.path))]
    picked = [texts[i] for i in sorted(np.random.default_rng(0).choice(len(texts), sample, replace=False))]
    encoder.encode(picked[:8])                               # warm: weights loaded, first batch paid
    start = time.perf_counter()
    encoder.encode(picked)
    per_doc = (time.perf_counter() - start) / len(picked)
    return {"documents": len(texts), "import_seconds": import_s, "agreement_other_sample": agreement,
            "encode_sample": sample, "encode_docs_per_second": round(1 / per_doc, 2),
            "encode_whole_corpus_seconds_at_that_rate": round(per_doc * len(texts), 0),
            "speedup": round(per_doc * len(texts) / import_s, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpnet-sample", type=int, default=128)
    parser.add_argument("--skip", nargs="*", default=[], choices=["minilm", "mpnet"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tava-import-bench-"))
    try:
        report: dict[str, Any] = {"benchmark": "import_vectors", "host": platform.node(), "cpu": cpu_info(),
                                  "load_before": list(os.getloadavg())}
        if "minilm" not in args.skip:
            report["minilm"] = minilm(work)
        if "mpnet" not in args.skip:
            report["mpnet"] = mpnet(work, args.mpnet_sample)
        report["load_after"] = list(os.getloadavg())
        write_result(args.out, report)
        print(report)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
