"""`tava translate` throughput: a stored collection of MiniLM vectors moved into mpnet's space.

The issue asks for SciFact's 5,183 MiniLM document vectors; on a machine shared by many jobs their
encoding did not fit (bench/translate_data.py minilm:corpus), so when they are not cached this
measures the same number of MiniLM *passage* vectors (the bench's cache), through the same code path:
four Parquet shards + manifest -> `tava_core.translate` -> translated shards + manifest, then a re-run
(every shard skipped). The map is a linear adapter (the unsupervised map's shape: 384 -> 768 + bias);
throughput does not depend on its values, so a paired Procrustes fit on passages 1000..3499 stands in.
Writes bench/results/translate_store.json.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import translate_data as td  # noqa: E402
from shared_data import write_result  # noqa: E402

OUT = ROOT / "bench" / "results" / "translate_store.json"


def main() -> None:
    import torch

    from tava_core.adapter.baselines import fit_procrustes
    from tava_core.adapter.unsupervised import inverse_of
    from tava_core.home import TavaHome
    from tava_core.manifest import read_vector_dir
    from tava_core.translate import TranslateConfig, translate

    torch.set_num_threads(2)
    corpus = td.cached_only("minilm", "corpus")
    minilm = td.cached_only("minilm", "passages")
    _, mpnet = td.mpnet_vectors("passages_shuffled_first20000.parquet")
    vectors, what = (corpus, "SciFact corpus") if corpus is not None else (minilm[:5183], "MiniLM passage vectors (stand-in)")
    linear_map = fit_procrustes(minilm[1000:3500], mpnet[1000:3500])
    linear_map.bias = np.zeros(768, np.float32)
    work = ROOT / ".tava" / "bench-translate" / "store"
    src, adapter = td.write_store(work, [f"doc{j}" for j in range(len(vectors))], vectors, linear_map,
                                  inverse_of(linear_map), dataset="store")
    home = TavaHome(work / "home")
    config = TranslateConfig(adapter=str(adapter), vectors=str(src))
    started, cpu = time.perf_counter(), time.process_time()
    record = translate(config, home)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    _, out, _ = read_vector_dir(record["out"])
    np.testing.assert_allclose(out, linear_map(vectors), atol=1e-4)
    started = time.perf_counter()
    rerun = translate(config, home)
    rerun_seconds = time.perf_counter() - started
    report = {"benchmark": "tava translate throughput (bench/translate_store.py)", "vectors": what, "rows": len(vectors),
              "dims": [int(vectors.shape[1]), 768], "shards": 4, "seconds": round(seconds, 3),
              "cpu_seconds": round(cpu_seconds, 3), "vectors_per_second": round(len(vectors) / seconds, 1),
              "vectors_per_cpu_second": round(len(vectors) / cpu_seconds, 1),
              "rerun_seconds": round(rerun_seconds, 3), "rerun_shards_skipped": rerun["shards_skipped"],
              "note": "wall time on a 2-core machine shared with ~7 other jobs (load average ~20)"}
    write_result(OUT, report, indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
