"""Can the router skip the document bank? (issue 16's static batch-1 cost; dev only)

A static query's retrieval_entropy needs its cosines to the corpus' documents -- the read that keeps a
routed static query above 2x the student at batch 1. If a small model of the query's student vector
predicted the entropy, the fused static path (tava_core/route/fused.py) would give its first layer for
free and no bank would be read. Here: the exact entropy (full bank) of the student's own training texts
and the corpus' calibration spans (label-free) is the target; a linear map and two MLPs (64 / 256
hidden) are fitted on 90% of them (best epoch by Spearman on the other 10%); on SciFact's 809 train
queries (dev) the prediction is compared with the exact entropy and with the true top-10 overlap
(what the router ranks by). No test query is read.

    python bench/route_distilled_entropy.py static-a,static-b   # -> bench/results/route_distilled_entropy_dev.json
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.route as route  # noqa: E402
from bench.shared_data import write_result  # noqa: E402
from tava_core.route.calibrate import spearman, true_agreement  # noqa: E402
from tava_core.route.signals import compute_signals  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "route_distilled_entropy_dev.json"
EPOCHS = 60


def _unit(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=torch.float32)


def fit_predictor(x: torch.Tensor, y: torch.Tensor, hidden: int) -> tuple[torch.nn.Module, float]:
    """A linear map (hidden 0) or a one-hidden-layer MLP regressing y on x; the epoch with the best
    Spearman on a held-out tenth is kept."""
    torch.manual_seed(0)
    net: torch.nn.Module = (torch.nn.Linear(x.shape[1], 1) if not hidden else torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1)))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    perm = torch.randperm(len(x))
    held, train = perm[:len(x) // 10], perm[len(x) // 10:]
    best, state = -1.0, None
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(train)).split(256):
            rows = train[batch]
            loss = torch.nn.functional.mse_loss(net(x[rows]).squeeze(1), y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            score = spearman(net(x[held]).squeeze(1).numpy(), y[held].numpy())
        if score > best:
            best, state = score, {k: t.clone() for k, t in net.state_dict().items()}
    assert state is not None
    net.load_state_dict(state)
    return net, best


def main() -> None:
    torch.set_num_threads(1)
    labels = sys.argv[1].split(",") if len(sys.argv) > 1 else ["static-a", "static-b"]
    teacher, paths, datasets, students = route.dev_bench_inputs(labels)
    dev = datasets["scifact-dev"]
    # one candidate (the full bank) is all the signal models this needs
    route.CANDIDATES = {"full": route.CANDIDATES["only:retrieval_entropy"]}
    state = route.encode_students(students, {"scifact-dev": dev}, paths, teacher, {"students": {}})
    out = {}
    for label, st in state.items():
        model, enc = st["models"]["scifact"][route.FULL_BANK], st["encoded"]["scifact-dev"]
        reference = route.reference_texts(students[label], paths, teacher)
        assert reference is not None, f"{label} has no training texts"
        ref_texts = list(reference[0])
        texts = ref_texts + list(enc["calibration_texts"])
        vectors = np.concatenate([st["encoder"].encode(ref_texts, kind="query"), enc["calibration"]])
        target = compute_signals(model, texts, vectors, ["retrieval_entropy"])["retrieval_entropy"]
        exact = compute_signals(model, dev.data.query_texts, enc["queries"], ["retrieval_entropy"])["retrieval_entropy"]
        overlap = true_agreement(enc["queries"], dev.queries, dev.docs)["overlap"]
        y = torch.tensor((target - target.mean()) / target.std(), dtype=torch.float32)
        row = {"training_texts": len(texts), "exact_entropy_spearman_with_overlap": spearman(-exact, overlap)}
        for hidden in (0, 64, 256):
            net, held = fit_predictor(_unit(vectors), y, hidden)
            with torch.no_grad():
                predicted = net(_unit(enc["queries"])).squeeze(1).numpy()
            row[f"hidden{hidden}"] = {"held_out_spearman_with_exact": held,
                                      "dev_spearman_with_exact": spearman(predicted, exact),
                                      "dev_spearman_with_overlap": spearman(-predicted, overlap)}
            print(label, hidden, row[f"hidden{hidden}"], flush=True)
        out[label] = row
    write_result(RESULTS, {"benchmark": "predicting retrieval_entropy from the static query vector (issue 16), "
                                        "dev only (SciFact train queries)", "students": out})


if __name__ == "__main__":
    main()
