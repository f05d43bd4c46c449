"""The Stage A student and Stage B adapter that bench/speed.py times: small and quick (speed is
measured, not quality; the bench compares the exported files with these same torch models).

Calls the core functions directly (no Prefect server: on a loaded machine its API timed out):
ingest 3,000 generic passages, teacher vectors, a 2-layer transformer student (300 steps, no span
views), student vectors, a paired adapter (300 steps). Writes under <home> (default ./.tava):
artifacts/students/speed-student and artifacts/adapters/speed-adapter.

    .venv/bin/python bench/make_speed_models.py [--home DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PASSAGES = ROOT.parent / "shared" / "data" / "corpus_passages_en.jsonl.gz"


def untrained(home: Path) -> None:
    """Same architecture as the trained pair (2 of the teacher's layers + 384x384 projection; a
    1024-wide residual adapter), built in seconds: timings and torch/ONNX agreement are what the
    speed bench needs from them."""
    import torch

    from tava_core.adapter import Vec2VecAdapter, save_adapter
    from tava_core.config import EncoderSpec
    from tava_core.distill.students import TransformerStudent
    from tava_core.encoders import resolve_model_path

    teacher_dir = resolve_model_path("all-MiniLM-L6-v2")
    student_dir = home / "artifacts" / "students" / "speed-student-untrained"
    student = TransformerStudent.from_teacher(teacher_dir, layers=[0, 5], projection=True, teacher_dim=384)
    student.save(student_dir)
    adapter = Vec2VecAdapter(384, 384, [1024]).eval()
    with torch.no_grad():
        adapter.net.skip.weight.copy_(torch.eye(384))
    out = save_adapter(home / "artifacts" / "adapters" / "speed-adapter-untrained", adapter,
                       student=EncoderSpec(model=str(student_dir)).model_dump(mode="json"),
                       metadata={"lineage": {"teacher": {"name": "all-MiniLM-L6-v2", "dim": 384}}})
    print("adapter:", out, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=str(ROOT / ".tava"))
    parser.add_argument("--untrained", action="store_true",
                        help="no training: the student is teacher layers 0 and 5 + an identity projection, the "
                             "adapter an identity skip path (same shapes and cost as trained ones; for speed only)")
    args = parser.parse_args()
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TAVA_HOME": args.home})
    if args.untrained:
        untrained(Path(args.home))
        return
    from tava_core.adapter.config import AdapterConfig
    from tava_core.adapter.run import train_adapter_from_dirs
    from tava_core.config import EncoderSpec, IngestConfig
    from tava_core.distill.config import DistillConfig
    from tava_core.distill.run import distill
    from tava_core.embed import EmbedConfig, embed_dataset
    from tava_core.home import TavaHome
    from tava_core.ingest import ingest

    home = TavaHome(args.home)
    if not (home.dataset_dir("speed-passages") / "manifest.json").is_file():
        ingest(IngestConfig(source=str(PASSAGES), name="speed-passages", max_records=3000), home)
    teacher_dirs = embed_dataset(EmbedConfig(dataset="speed-passages", encoder=EncoderSpec()), home)
    card = distill(DistillConfig(datasets=["speed-passages"], student="transformer", steps=300, span_views=0,
                                 eval_every=100, name="speed-student"), home, progress=False)
    student = card.output
    print("student:", student, card.best_cosine, flush=True)
    student_dirs = embed_dataset(EmbedConfig(dataset="speed-passages", encoder=EncoderSpec(model=student)), home)
    collection = next(iter(teacher_dirs))
    run = train_adapter_from_dirs(AdapterConfig(student_vectors=[str(student_dirs[collection])],
                                                teacher_vectors=[str(teacher_dirs[collection])], student=student,
                                                name="speed-adapter", max_steps=300, seeds=[0]), home)
    print("adapter:", run.directory, flush=True)


if __name__ == "__main__":
    main()
