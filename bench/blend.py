"""Two students in the teacher's space, blended: does a static student (nearly free) beside a
transformer student (+ adapter) keep more of the teacher than either alone?

Both students map queries into the teacher's space, so a blend is one vector,
``normalize(w * a(q) + (1 - w) * b(q))``, searched against the teacher's documents as any student's
(for unit vectors its cosine is w * cos(a, d) + (1 - w) * cos(b, d) up to one per-query scale, so the
ranking is the weighted sum of the two students' scores). Its cost is the two students' encodings;
a static student's is ~1/1000 of a transformer student's.

A member is a saved encoder directory (a student, or a Stage B directory with its student inside);
``PATH:adapt`` first fits Stage B (tava's paired defaults) on the corpus's label-free text (its
documents and their span views, never its queries) on top of the student at PATH, as
bench/transfer.py --adapt does.

Phases keep choosing and reporting apart:
- ``--phase dev``: the weight grid on one corpus's dev queries (SciFact train, or the built-in data);
  prints and saves every weight's score, and the weight chosen there (best nDCG@10, ties to the larger
  share of the transformer student).
- ``--phase test``: one weight (``--weight``, chosen on dev), SciFact test read once.

    python bench/blend.py --phase dev --corpus scifact --teacher all-mpnet-base-v2 \
        --a /work/cache/s25/mpnet01-1000:adapt --b /work/cache/s26/mpnet-static-ctx --tag mpnet
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.transfer import fit_stage_b, judged, queries_per_second, save_row, score  # noqa: E402
from bench.transfer_data import builtin, scifact, teacher_vectors  # noqa: E402
from tava_core.adapter.baselines import normalize_rows  # noqa: E402
from tava_core.encoders.base import Encoder  # noqa: E402
from tava_core.encoders.blend import BlendEncoder  # noqa: E402
from tava_core.evaluate.metrics import paired_bootstrap  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "blend.json"
WEIGHTS = [round(0.1 * k, 1) for k in range(11)]


def member_encoder(spec: str, teacher: str, corpus: str) -> tuple[Encoder, dict[str, Any] | None]:
    """The encoder ``spec`` names (PATH, or PATH:adapt = the student at PATH + Stage B fitted on the
    corpus's label-free text, as bench/transfer.py --adapt fits it), and that fit's record."""
    from tava_core.adapter.config import AdapterConfig
    from tava_core.adapter.encoder import AdaptedEncoder
    from tava_core.encoders import load_encoder

    path, _, option = spec.partition(":")
    if option not in ("", "adapt"):
        raise SystemExit(f"member {spec!r}: unknown option {option!r} (only ':adapt')")
    encoder = load_encoder(path, cache=False)
    if option != "adapt":
        return encoder, None
    run, info = fit_stage_b(encoder, teacher, corpus, AdapterConfig(mode="paired"))
    return AdaptedEncoder(encoder, run.result.adapter, adapter_hash=f"bench-{corpus}"), info


def blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """The blend's vectors from its members' (unit) vectors: what BlendEncoder computes, without encoding
    again for every weight of the grid."""
    return normalize_rows(weight * a + (1.0 - weight) * b)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=["dev", "test"], required=True)
    parser.add_argument("--corpus", choices=["scifact", "builtin"], required=True,
                        help="scored on its dev queries (SciFact train / the built-in data) or, --phase test, SciFact test")
    parser.add_argument("--teacher", choices=["all-MiniLM-L6-v2", "all-mpnet-base-v2"], required=True)
    parser.add_argument("--a", required=True, help="the transformer student (PATH or PATH:adapt)")
    parser.add_argument("--b", required=True, help="the static student (PATH or PATH:adapt)")
    parser.add_argument("--b-alt", default=None,
                        help="another static student to compare with --b: its blends with --a at every weight, and "
                             "their paired 95%% intervals against --b's blend at the same weight")
    parser.add_argument("--weight", type=float, default=None, help="--phase test: the weight of --a chosen on dev")
    parser.add_argument("--speed-queries", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.phase == "test" and (args.weight is None or args.corpus != "scifact"):
        parser.error("--phase test reads SciFact test once, with --weight chosen on dev")
    split = "test" if args.corpus == "builtin" or args.phase == "test" else "train"

    data = scifact() if args.corpus == "scifact" else builtin()[0]
    docs = teacher_vectors(args.teacher, data.docs, log=False)
    teacher_q = teacher_vectors(args.teacher, data.queries, log=False)
    rows = judged(data, split)
    texts = [data.queries.texts[k] for k in rows]
    (a, a_info), (b, b_info) = (member_encoder(spec, args.teacher, args.corpus) for spec in (args.a, args.b))
    qa, qb = (normalize_rows(m.encode(texts, kind="query", batch_size=64).astype(np.float32)) for m in (a, b))
    t = score(teacher_q[rows], data, split, docs)
    sa, sb = score(qa, data, split, docs), score(qb, data, split, docs)

    def summary(values: np.ndarray) -> dict[str, Any]:
        versus_a, versus_t = paired_bootstrap(values, sa), paired_bootstrap(values, t)
        return {"ndcg_at_10": round(float(values.mean()), 4), "retention": round(float(values.mean() / t.mean()), 4),
                "retention_95": [round(1 + versus_t["low"] / float(t.mean()), 4),
                                 round(1 + versus_t["high"] / float(t.mean()), 4)],
                "minus_a_95": [round(versus_a["low"], 4), round(versus_a["high"], 4)]}

    weights = WEIGHTS if args.phase == "dev" else [args.weight]
    blended = {w: score(blend(qa, qb, w), data, split, docs) for w in weights}   # per query, reused by --b-alt
    by_weight = {str(w): summary(blended[w]) for w in weights}
    # ties go to the larger share of the transformer student (the one the target names)
    chosen = max(weights, key=lambda w: (by_weight[str(w)]["ndcg_at_10"], w))

    alternative = None
    if args.b_alt:
        alt, alt_info = member_encoder(args.b_alt, args.teacher, args.corpus)
        qalt = normalize_rows(alt.encode(texts, kind="query", batch_size=64).astype(np.float32))
        alternative = {"spec": args.b_alt, "adapter": alt_info, **summary(score(qalt, data, split, docs)),
                       "weights": {}}
        for w in weights:
            mixed = score(blend(qa, qalt, w), data, split, docs)
            versus = paired_bootstrap(mixed, blended[w])
            alternative["weights"][str(w)] = {**summary(mixed), "minus_b_blend_95": [round(versus["low"], 4),
                                                                                   round(versus["high"], 4)]}

    sci = scifact()
    speed_texts = [sci.queries.texts[k] for k, q in enumerate(sci.queries.ids) if q in sci.qrels["test"]][:args.speed_queries]
    from tava_core.encoders import load_encoder

    # timed as served: tava's BlendEncoder runs both members, one after the other (a weight of 0 or 1 is
    # one member alone)
    served = a if chosen == 1.0 else b if chosen == 0.0 else BlendEncoder([a, b], [chosen, 1.0 - chosen])
    teacher_qps = queries_per_second(load_encoder(args.teacher), speed_texts)
    speed = {"teacher_qps": round(teacher_qps, 1)}
    for name, encoder in (("a", a), ("b", b), ("blend", served)):
        qps = queries_per_second(encoder, speed_texts)
        speed[f"{name}_qps"], speed[f"{name}_speedup"] = round(qps, 1), round(qps / teacher_qps, 2)

    row = {"phase": args.phase, "corpus": args.corpus, "split": split, "teacher": args.teacher,
           "queries": len(rows), "teacher_ndcg_at_10": round(float(t.mean()), 4),
           "a": {"spec": args.a, "adapter": a_info, **summary(sa)},
           "b": {"spec": args.b, "adapter": b_info, **summary(sb)},
           "weights": by_weight, "chosen_weight": chosen, "b_alt": alternative, "speed": speed, "command": " ".join(sys.argv[1:])}
    label = f"{args.phase}/{args.corpus}/{args.teacher}" + (f"/{args.tag}" if args.tag else "")
    save_row(label, row, args.results)
    print(json.dumps({label: row}, indent=1))


if __name__ == "__main__":
    main()
