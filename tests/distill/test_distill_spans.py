"""Span views (short label-free training texts) and length-grouped batches."""
from __future__ import annotations

import numpy as np
import pytest
from distill_helpers import make_toy_dataset

from tava_core.distill.spans import MAX_WORDS, MIN_WORDS, make_spans, title_views, write_span_dataset
from tava_core.distill.trainer import BatchPlan
from tava_core.home import TavaHome
from tava_core.io import read_text_shard
from tava_core.manifest import load_dataset_manifest

PASSAGE = ("Aspirin is widely used. It lowers the risk of a first heart attack in adults over fifty, a large "
           "trial found after ten years of follow-up across many hospitals in three countries! Side effects "
           "were rare; bleeding in the stomach was the most common one reported by the doctors involved.")


def test_spans_are_short_deterministic_and_per_text():
    ids, texts = ["a", "b"], [PASSAGE, "one two three"]
    span_ids, spans = make_spans(ids, texts, views=4, seed=0)
    assert make_spans(ids, texts, views=4, seed=0) == (span_ids, spans)
    assert make_spans(ids, texts, views=4, seed=1) != (span_ids, spans)
    a_spans = [s for i, s in zip(span_ids, spans, strict=False) if i.startswith("a#")]
    assert 2 <= len(a_spans) <= 4 and len(set(a_spans)) == len(a_spans)  # de-duplicated per text
    for span in a_spans:
        assert MIN_WORDS <= len(span.split()) <= MAX_WORDS and span in " ".join(PASSAGE.split())
    assert [s for i, s in zip(span_ids, spans, strict=False) if i.startswith("b#")] == ["one two three"]  # too short to cut
    # A function of the text's id: adding texts elsewhere changes no existing span.
    more_ids, more = make_spans(["z"] + ids, ["other words entirely here and there"] + texts, views=4, seed=0)
    assert [s for i, s in zip(more_ids, more, strict=False) if not i.startswith("z#")] == spans


def test_span_dataset_is_written_once_and_respects_the_limit(tmp_path):
    home = TavaHome(tmp_path)
    source = make_toy_dataset(tmp_path, "toy", n=50)
    out = write_span_dataset(home, source, ["texts"], views=2, seed=0)
    manifest = load_dataset_manifest(out)
    rows = manifest.collections["spans"].rows
    assert 50 <= rows <= 100 and manifest.info["from"] == "toy"
    shard = out / manifest.collections["spans"].shards[0].path
    before = shard.stat().st_mtime_ns
    assert write_span_dataset(home, source, ["texts"], views=2, seed=0) == out
    assert shard.stat().st_mtime_ns == before  # reused, not rewritten
    limited = write_span_dataset(home, source, ["texts"], views=2, seed=0, limit=10)
    ids = read_text_shard(limited / load_dataset_manifest(limited).collections["spans"].shards[0].path)
    assert {i.split("#")[0] for i in ids.column("id").to_pylist()} <= {f"t{i}" for i in range(10)}
    assert not list(tmp_path.rglob("*.tmp*"))


def _titled_dataset(tmp_path, titles: list[str]):
    """An ingested dataset whose rows carry ``titles`` (one text per title)."""
    from tava_core.io import write_text_shard
    from tava_core.manifest import Collection, DatasetManifest, ShardRecord, save_manifest

    out = TavaHome(tmp_path).dataset_dir("titled")
    ids = [f"d{i}" for i in range(len(titles))]
    rec = write_text_shard(out / "corpus" / "shard-00000.parquet",
                           {"id": ids, "text": [PASSAGE] * len(ids), "title": titles})
    save_manifest(out, DatasetManifest(name="titled", source="toy", collections={
        "corpus": Collection(shards=[ShardRecord(path="corpus/shard-00000.parquet", rows=rec["rows"],
                                                 sha256=rec["sha256"])])}))
    return out


def test_titles_become_views_of_their_own(tmp_path):
    titles = ["Aspirin and  heart attacks", "", "Introduction", "aspirin AND heart attacks", "Bleeding risk"]
    # one-word and empty titles ask for nothing; a title repeated (up to case and spacing) is taken once
    assert title_views([f"d{i}" for i in range(5)], titles) == (
        ["d0#title", "d4#title"], ["Aspirin and heart attacks", "Bleeding risk"])
    home = TavaHome(tmp_path)
    source = _titled_dataset(tmp_path, titles)

    def rows(out) -> dict[str, str]:
        table = read_text_shard(out / load_dataset_manifest(out).collections["spans"].shards[0].path)
        return dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))

    plain_dir = write_span_dataset(home, source, ["corpus"], views=1, seed=0)
    plain = rows(plain_dir)
    titled_dir = write_span_dataset(home, source, ["corpus"], views=1, seed=0, titles=True)
    titled = rows(titled_dir)
    assert titled_dir != plain_dir and rows(plain_dir) == plain    # a dataset of its own: the plain one stays
    # the same span views as without the option, then the titles
    assert {k: v for k, v in titled.items() if "#span" in k} == plain
    assert {k: v for k, v in titled.items() if k.endswith("#title")} == {"d0#title": "Aspirin and heart attacks",
                                                                          "d4#title": "Bleeding risk"}
    assert load_dataset_manifest(titled_dir).info["titles"] == 2
    # the limit and the sample cut titles with their texts
    assert [k for k in rows(write_span_dataset(home, source, ["corpus"], views=1, seed=0, limit=3, titles=True))
            if k.endswith("#title")] == ["d0#title"]
    # a corpus without a title to take: exactly the dataset written without the option, reused as it is
    toy = make_toy_dataset(tmp_path, "toy", n=20)
    untitled = write_span_dataset(home, toy, ["texts"], views=1, seed=0)
    shard = untitled / load_dataset_manifest(untitled).collections["spans"].shards[0].path
    before = shard.stat().st_mtime_ns
    assert write_span_dataset(home, toy, ["texts"], views=1, seed=0, titles=True) == untitled
    assert shard.stat().st_mtime_ns == before


def test_span_views_of_a_big_dataset_come_from_a_seeded_sample(tmp_path):
    home = TavaHome(tmp_path)
    source = make_toy_dataset(tmp_path, "toy", n=50)

    def sources(out) -> set[str]:
        manifest = load_dataset_manifest(out)
        table = read_text_shard(out / manifest.collections["spans"].shards[0].path)
        return {i.split("#")[0] for i in table.column("id").to_pylist()}

    every = write_span_dataset(home, source, ["texts"], views=2, seed=0)
    assert write_span_dataset(home, source, ["texts"], views=2, seed=0, sample=50) == every   # cuts nothing
    sampled = write_span_dataset(home, source, ["texts"], views=2, seed=0, sample=20)
    assert sampled != every and len(sources(sampled)) == 20 and sources(sampled) < sources(every)
    again = write_span_dataset(TavaHome(tmp_path / "other-home"), source, ["texts"], views=2, seed=0, sample=20)
    assert sources(again) == sources(sampled)                                                  # seeded
    assert sources(write_span_dataset(home, source, ["texts"], views=2, seed=1, sample=20)) != sources(sampled)


def test_length_grouped_batches_cover_each_text_once_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = np.where(rng.random(4000) < 0.5, rng.integers(20, 120, 4000), rng.integers(500, 900, 4000))
    train = np.sort(rng.permutation(4000)[:3600])
    grouped, plain = BatchPlan(train, 64, seed=3, lengths=lengths), BatchPlan(train, 64, seed=3)
    epoch = np.concatenate([grouped(step) for step in range(grouped.per_epoch)])
    assert len(epoch) == len(set(epoch.tolist())) == grouped.per_epoch * 64 and set(epoch) <= set(train)

    def padding(plan: BatchPlan) -> float:  # padded positions / real positions over an epoch
        waste = [lengths[plan(s)].max() * 64 - lengths[plan(s)].sum() for s in range(plan.per_epoch)]
        return sum(waste) / sum(lengths[train])

    assert padding(grouped) < 0.5 * padding(plain)
    # A pure function of (seed, step): a resumed run (a new plan) walks the same batches.
    again = BatchPlan(train, 64, seed=3, lengths=lengths)
    for step in (0, 7, grouped.per_epoch + 5):
        np.testing.assert_array_equal(again(step), grouped(step))
    assert not np.array_equal(grouped(grouped.per_epoch), grouped(0))  # a new order each epoch


def test_a_time_capped_run_still_anneals_its_learning_rate():
    import torch

    from tava_core.distill import DistillConfig
    from tava_core.distill.trainer import Optimization

    config = DistillConfig(steps=100, warmup_steps=10, lr=1e-3, schedule="linear")
    student = torch.nn.Linear(4, 4)
    optimization = Optimization(student, config)
    optimization.set_progress(4)
    assert optimization.lr == pytest.approx(1e-3 * 5 / 10)             # warm-up
    optimization.set_progress(20)
    assert optimization.lr == pytest.approx(1e-3 * (1 - 10 / 90))      # by steps
    optimization.set_progress(20, time_fraction=0.55)                  # the clock is further along
    assert optimization.lr == pytest.approx(1e-3 * (1 - 45 / 90))
    optimization.set_progress(20, time_fraction=1.0)
    assert optimization.lr == pytest.approx(0.0)
    optimization.set_progress(4, time_fraction=0.9)                    # never skips the warm-up
    assert optimization.lr == pytest.approx(1e-3 * 5 / 10)


@pytest.mark.parametrize("title_views", [True, False])
def test_stage_a_takes_title_views_by_default(tmp_path, title_views):
    from tava_core.distill import DistillConfig
    from tava_core.distill.run import span_datasets

    source = _titled_dataset(tmp_path, ["Aspirin and heart attacks", "Bleeding risk"])
    config = DistillConfig(datasets=[str(source)], span_views=1) if title_views else DistillConfig(
        datasets=[str(source)], span_views=1, title_views=False)
    assert DistillConfig().title_views                       # on unless turned off
    (out,) = span_datasets(config, TavaHome(tmp_path))
    table = read_text_shard(out / load_dataset_manifest(out).collections["spans"].shards[0].path)
    titles = [t for i, t in zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True)
              if i.endswith("#title")]
    assert titles == (["Aspirin and heart attacks", "Bleeding risk"] if title_views else [])
    # the titles are span rows, so the training key is the same either way (the data key tells them apart)
    assert config.training_key() == config.model_copy(update={"title_views": not title_views}).training_key()
