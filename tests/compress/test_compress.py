"""Compression stage: model, losses, mining, training with early stopping, save/load, composition."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from compress_helpers import synthetic_data, unit
from pydantic import ValidationError

from tava_core.compress import (
    CompressConfig,
    CompressionAdapter,
    HeadwiseNTXentLoss,
    HingeTripletLoss,
    SimilarityPreservationLoss,
    build_pca,
    build_prefix,
    load_compressor,
    mine_labeled_triplets,
    mine_pseudo_triplets,
    save_compressor,
    train_method,
)
from tava_core.compress.trainer import evaluate_model
from tava_core.errors import ConfigError, ModelLoadError

# The mean hinge learns from these synthetic sets' zero start in fewer steps than the default soft-max
# hinge, and their encoder neighbourhoods are nuisance by construction (compress_helpers), so no
# corpus pseudo-triplets; the defaults are exercised where a test says so.
FAST = dict(dataset="synthetic", hidden_dim=32, batch_size=32, max_steps=150, eval_every=25, patience=3,
            lr=1e-2, margin=0.5, negative_depth=10, projection_lr_scale=1.0, triplet_temperature=None,
            pseudo_triplet_weight=0.0)
torch.set_num_threads(1)


def test_pca_and_prefix_compress_to_unit_vectors_and_residual_starts_at_zero():
    x = unit(np.random.default_rng(0).standard_normal((200, 16)))
    pca = build_pca(x, 4, center=True)
    out = pca.map_numpy(x)
    assert out.shape == (200, 4) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # the PCA projection of the centred data keeps the largest variance a 4-d projection can
    centred = x - x.mean(0)
    kept = np.linalg.norm(centred @ pca.projection.weight.detach().numpy().T) ** 2
    random_axes = np.linalg.qr(np.random.default_rng(1).standard_normal((16, 4)))[0]
    assert kept > np.linalg.norm(centred @ random_axes) ** 2
    prefix = build_prefix(16, 4)
    assert np.allclose(prefix.map_numpy(x), unit(x[:, :4]), atol=1e-6)
    with_residual = build_pca(x, 4, center=True, hidden_dim=8)
    assert np.allclose(with_residual.map_numpy(x), out, atol=1e-6)   # zero-initialised correction


def test_hinge_triplet_loss_gives_no_gradient_once_the_margin_is_met():
    anchor = torch.tensor([[1.0, 0.0]], requires_grad=True)
    positive = torch.tensor([[1.0, 0.0]])
    far_negative = torch.tensor([[[0.0, 1.0]]])                         # cos 0: gap 1 > margin
    loss = HingeTripletLoss(margin=0.5)(anchor, positive, far_negative)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(anchor.grad) == 0
    anchor.grad = None
    close_negative = torch.nn.functional.normalize(torch.tensor([[[1.0, 0.3]]]), dim=-1)
    loss = HingeTripletLoss(margin=0.5)(anchor, positive, close_negative)
    loss.backward()
    assert loss.item() > 0 and torch.count_nonzero(anchor.grad) > 0
    mask = torch.zeros(1, 1)                                            # a masked negative counts for nothing
    assert HingeTripletLoss(0.5)(anchor, positive, close_negative, mask).item() == 0.0


def test_soft_max_hinge_pushes_the_negatives_that_outrank_the_positive_and_stops_at_the_margin():
    anchor = torch.tensor([[1.0, 0.0, 0.0]])
    positive = torch.nn.functional.normalize(torch.tensor([[1.0, 0.6, 0.0]]), dim=-1)      # cos 0.86
    outranks = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, 0.3]), dim=0)          # cos 0.96
    easy = torch.nn.functional.normalize(torch.tensor([0.3, 0.0, 1.0]), dim=0)              # cos 0.29
    negatives = torch.stack([outranks, easy]).unsqueeze(0).requires_grad_(True)
    loss = HingeTripletLoss(margin=0.1, temperature=0.05)(anchor, positive, negatives)
    loss.backward()
    hard_grad, easy_grad = negatives.grad[0].norm(dim=-1)
    assert loss.item() > 0 and hard_grad > 100 * easy_grad        # the mean hinge would weigh both alike
    # met by the margin against even the soft maximum: exactly no gradient
    far = torch.nn.functional.normalize(torch.tensor([[[0.0, 0.0, 1.0], [0.0, -1.0, 0.2]]]), dim=-1)
    far.requires_grad_(True)
    loss = HingeTripletLoss(margin=0.1, temperature=0.05)(anchor, positive, far)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(far.grad) == 0
    # an anchor whose negatives are all masked counts for nothing, and gives no NaN
    mask = torch.zeros(1, 2)
    masked = negatives.detach().clone().requires_grad_(True)
    loss = HingeTripletLoss(margin=0.1, temperature=0.05)(anchor, positive, masked, mask)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(masked.grad).all()


def test_headwise_ntxent_prefers_views_that_agree_and_similarity_loss_is_zero_on_identity():
    torch.manual_seed(0)
    items = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    agreeing = [items, items, items]
    shuffled = [items, items[torch.randperm(16)], items[torch.randperm(16)]]
    loss = HeadwiseNTXentLoss(0.1)
    assert loss(agreeing) < loss(shuffled)
    assert SimilarityPreservationLoss(top_k=3)(items, items).item() == pytest.approx(0.0, abs=1e-6)
    assert SimilarityPreservationLoss(top_k=3)(items[:, :4] / items[:, :4].norm(dim=1, keepdim=True), items) > 0.01


def test_triplet_mining_excludes_positives_and_self():
    data = synthetic_data()
    triplets = mine_labeled_triplets(data.train, data.corpus_ids, data.corpus, depth=10)
    position = {d: i for i, d in enumerate(data.corpus_ids)}
    for row, pos, pool in zip(triplets.anchor_rows, triplets.positives, triplets.negatives, strict=False):
        relevant = {position[d] for d in data.train.qrels[data.train.ids[row]]}
        assert pos in relevant and not relevant & set(pool.tolist())
    pseudo = mine_pseudo_triplets(data.corpus, data.corpus, anchor_docs=np.arange(len(data.corpus)),
                                  positive_top=1, negative_ranks=(5, 15))
    assert pseudo.negatives.shape == (len(data.corpus), 10)
    assert not (pseudo.positives == np.arange(len(data.corpus))).any()
    scores = data.corpus @ data.corpus.T
    rows = np.arange(len(data.corpus))
    assert (scores[rows, pseudo.positives] >= scores[rows[:, None], pseudo.negatives].max(axis=1)).all()
    with pytest.raises(ConfigError):
        mine_pseudo_triplets(data.corpus, data.corpus, negative_ranks=(1, 5))


def test_dive_learns_what_pca_misses_on_held_out_queries():
    data = synthetic_data()
    # the default soft-max hinge moves only the negatives that outrank the positive: slower from this
    # start (validation 0) than the mean hinge, so more steps
    config = CompressConfig(**{**FAST, "triplet_temperature": 0.05, "max_steps": 600, "patience": 30})
    scores = {}
    for method in ("pca", "truncate", "dive"):
        result = train_method(method, 6, data, config)
        scores[method] = evaluate_model(result.model, data.test, data.corpus_ids, data.corpus)["ndcg_at_10"]
        if method == "dive":
            dive = result
    assert dive.validation_ndcg > dive.frozen_validation_ndcg + 0.1 and dive.best_step > 0
    assert scores["dive"] > scores["pca"] + 0.2 and scores["dive"] > scores["truncate"] + 0.2
    assert dive.history[0]["step"] == 0 and dive.history[-1]["step"] == dive.steps


def test_labeled_dive_also_trains_on_the_corpus_own_pseudo_triplets():
    from tava_core.compress.data import mine_pseudo_triplets

    data = synthetic_data()
    short = {**FAST, "max_steps": 30, "eval_every": 10, "min_gain_confidence": 0.0}
    with_pseudo = train_method("dive", 6, data, CompressConfig(**{**short, "pseudo_triplet_weight": 1.0}))
    without = train_method("dive", 6, data, CompressConfig(**short))
    assert with_pseudo.choices["pseudo_triplets"] == len(data.corpus) and "pseudo_triplets" not in without.choices
    # same seed, same labeled batches: only the pseudo-triplet term tells the two runs apart
    assert not torch.equal(with_pseudo.model.residual[0].weight, without.model.residual[0].weight)
    # each document's positive is its nearest other document, never itself
    pseudo = mine_pseudo_triplets(data.corpus, data.corpus, anchor_docs=np.arange(len(data.corpus)))
    nearest = np.argsort(-(data.corpus @ data.corpus.T - 2 * np.eye(len(data.corpus))), axis=1)[:, 0]
    assert (pseudo.positives == nearest).all() and (pseudo.positives != np.arange(len(data.corpus))).all()


def test_with_few_labels_dive_does_not_fall_below_its_frozen_start():
    data = synthetic_data(max_labeled=6)       # 4 training + 2 validation queries
    assert len(data.train) == 4 and len(data.validation) == 2
    config = CompressConfig(**{**FAST, "max_steps": 200})
    dive = train_method("dive", 6, data, config)
    frozen = train_method("pca", 6, data, config)
    assert dive.validation_ndcg >= dive.frozen_validation_ndcg
    assert dive.frozen_validation_ndcg == pytest.approx(frozen.validation_ndcg)
    test_dive = evaluate_model(dive.model, data.test, data.corpus_ids, data.corpus)["ndcg_at_10"]
    test_frozen = evaluate_model(frozen.model, data.test, data.corpus_ids, data.corpus)["ndcg_at_10"]
    assert test_dive >= test_frozen - 0.02


@pytest.mark.parametrize("method, start_method, validated_on", [
    ("dive-label-free", "pca", "teacher-neighbours"),   # picks its model with no labels at all
    ("matryoshka-adaptor", "truncate", "labels"),       # trains without labels, validated on the labeled split
])
def test_label_free_methods_train_without_labels(method, start_method, validated_on):
    data = synthetic_data()
    data.train.qrels.clear()     # nothing labeled reaches these methods' training
    config = CompressConfig(**{**FAST, "max_steps": 100, "pseudo_negative_ranks": [5, 20]})
    result = train_method(method, 6, data, config)
    losses = [row["loss"] for row in result.history[1:]]
    assert len(losses) >= 3 and losses[-1] < losses[0]  # it trained: its own objective fell
    assert result.model.map_numpy(data.corpus[:3]).shape == (3, 6)
    assert result.validation == validated_on
    if result.best_step == 0:
        # no validation beat the start (these sets' neighbourhoods are nuisance): the untouched
        # start is what is kept, the same map as the method it starts from
        start = train_method(start_method, 6, data, config).model
        np.testing.assert_allclose(result.model.map_numpy(data.corpus), start.map_numpy(data.corpus), atol=1e-6)
        assert result.validation_ndcg == result.frozen_validation_ndcg
    else:
        assert result.validation_ndcg > result.frozen_validation_ndcg


def test_compressor_round_trips_through_safetensors_and_rejects_damage(tmp_path):
    data = synthetic_data()
    model = train_method("dive", 6, data, CompressConfig(**{**FAST, "max_steps": 50})).model
    out = save_compressor(tmp_path / "c", model, metadata={"note": "x"})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((out / "config.json").read_text())["architecture"]["output_dim"] == 6
    loaded = load_compressor(out)
    assert np.allclose(loaded.map_numpy(data.corpus), model.map_numpy(data.corpus), atol=1e-6)
    (out / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError):
        load_compressor(out)
    with pytest.raises(ModelLoadError):
        load_compressor(tmp_path)
    with pytest.raises(ValueError):
        CompressionAdapter(8, 16)


def test_compressed_encoder_composes_with_a_base_encoder_and_vector_dirs(tmp_path, tiny_model_dir):
    from adapter_helpers import write_vector_dir

    from tava_core.compress.io import write_compressor_files
    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder
    from tava_core.manifest import read_vector_dir

    base = load_encoder(EncoderSpec(model=str(tiny_model_dir), device="cpu"))
    texts = ["a protein binds", "cells divide quickly", "the moon", "vaccines and immunity"] * 5
    base_vectors = base.encode(texts)
    compressor = build_pca(base_vectors, 8, center=True)
    directory = write_compressor_files(tmp_path / "pca-8d", compressor,
                                       metadata={"lineage": {"encoder": base.info()}},
                                       base_encoder=EncoderSpec(model=str(tiny_model_dir), device="cpu").model_dump())
    encoder = load_encoder(str(directory))
    assert type(encoder).__name__ == "CompressedEncoder" and encoder.dim == 8
    assert encoder.fingerprint != base.fingerprint
    assert np.allclose(encoder.encode(texts, kind="query"), compressor.map_numpy(base_vectors), atol=1e-5)
    # vectors already on disk: compressed shard by shard into a directory `tava index` reads
    ids = [f"t{i}" for i in range(len(texts))]
    vec_dir = write_vector_dir(tmp_path / "v", ids, base_vectors, fingerprint=base.fingerprint, name=base.name)
    # (`tava translate --adapter <compressor dir>`: the compressed encoder's fingerprint, so its queries search them)
    from tava_core.home import TavaHome
    from tava_core.translate import TranslateConfig, translate

    home = TavaHome(tmp_path / "home")
    record = translate(TranslateConfig(adapter=str(directory), vectors=str(vec_dir), out=str(tmp_path / "v8")), home)
    out_ids, out_vectors, manifest = read_vector_dir(record["out"])
    assert out_ids == ids and manifest.dim == 8 and manifest.fingerprint == encoder.fingerprint
    assert np.allclose(out_vectors, compressor.map_numpy(base_vectors), atol=1e-6)
    other = write_vector_dir(tmp_path / "w", ids, base_vectors, fingerprint="e" * 24, name="other")
    with pytest.raises(ConfigError, match="trained on"):
        translate(TranslateConfig(adapter=str(directory), vectors=str(other), out=str(tmp_path / "w8")), home)
    assert not (tmp_path / "w8").exists()
    with pytest.raises(ConfigError, match="no inverse"):
        translate(TranslateConfig(adapter=str(directory), vectors=str(vec_dir), direction="inverse"), home)


def test_config_rejects_impossible_settings():
    with pytest.raises(ConfigError):
        CompressConfig(dataset="x", dims=[])
    with pytest.raises(ConfigError):
        CompressConfig(dataset="x", pseudo_negative_ranks=[20, 10])
    with pytest.raises(ValidationError, match="Input should be 'dive'"):
        CompressConfig(dataset="x", method="svd")
    assert CompressConfig(dataset="x", method="pca").methods[0] == "pca"


def test_significance_gate_needs_a_consistent_gain_over_the_frozen_start():
    from tava_core.compress.trainer import significant_gain, t_quantile

    assert t_quantile(0.95, 3) == pytest.approx(2.353, abs=0.01)
    assert t_quantile(0.95, 1000) == pytest.approx(1.646, abs=0.01)
    assert significant_gain(np.full(50, 0.1) + np.random.default_rng(0).normal(0, 0.05, 50), 0.95)
    assert not significant_gain(np.array([0.6, -0.2, 0.0, 0.1]), 0.95)     # 4 noisy validation queries
    assert not significant_gain(np.array([0.5]), 0.95)


def test_refreshed_negatives_are_the_compressors_own_top_documents_minus_the_relevant_ones():
    from tava_core.compress.trainer import TripletSampler

    data = synthetic_data()
    triplets = mine_labeled_triplets(data.train, data.corpus_ids, data.corpus, depth=10)
    model = build_pca(data.corpus, 6, center=True)
    config = CompressConfig(**{**FAST, "refresh_negatives_every": 5})
    sampler = TripletSampler(triplets, torch.as_tensor(data.corpus), config, np.random.default_rng(0),
                             refresh_model=model)
    for _ in range(5):
        sampler.sample()
    assert sampler.refreshes == 0 and sampler.t is triplets          # the encoder's negatives first
    batch = sampler.sample()
    assert sampler.refreshes == 1 and batch["negatives"].shape == (config.batch_size, config.negatives_per_anchor)
    docs, queries = model.map_numpy(data.corpus), model.map_numpy(triplets.anchors)
    relevant: dict[int, set[int]] = {}
    for row, doc in zip(triplets.anchor_rows.tolist(), triplets.positives.tolist(), strict=False):
        relevant.setdefault(row, set()).add(doc)
    for row, pool in zip(sampler.t.anchor_rows.tolist(), sampler.t.negatives, strict=False):
        assert not relevant[row] & set(pool.tolist())
        ranked = [d for d in np.argsort(-(queries[row] @ docs.T), kind="stable") if d not in relevant[row]]
        assert set(pool.tolist()) == set(ranked[:10])
    # the compressed space confuses other documents than the teacher did: the pools really changed
    assert (sampler.t.negatives != triplets.negatives).any()
    dive = train_method("dive", 6, data, CompressConfig(**{**FAST, "refresh_negatives_every": 20}))
    assert dive.validation_ndcg > dive.frozen_validation_ndcg + 0.1


@pytest.mark.parametrize("options, option", [({}, "--train-split"), ({"train_split": "test", "eval_split": "dev"},
                                                                         "--eval-split")])
def test_a_missing_split_names_the_option_that_chooses_it(tmp_path, tava_home, options, option):
    """A dataset with test qrels only: the error lists the splits present and says which option picks one
    (it said only "splits present: test")."""
    from tava_core.compress.config import CompressConfig
    from tava_core.compress.run import load_splits
    from tava_core.errors import InputError
    from tava_core.home import TavaHome

    root = tmp_path / "toy"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "", "text": "a document"}) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "a query"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(InputError, match="qrels file for this split not found") as info:
        load_splits(CompressConfig(dataset=str(root), **options), TavaHome(tava_home))
    assert info.value.hint.startswith("splits present: test; choose one with " + option), info.value.hint


def _report(dims: list[int]) -> dict:
    rows = [{"method": m, "dim": d, "validation_ndcg_at_10": 0.5 + 0.01 * d / max(dims) + (0.02 if m == "dive" else 0)}
            for m in ("pca", "dive") for d in dims]
    return {"results": rows, "full_dimension": {"validation": {"ndcg_at_10": 0.6}, "test": None}, "input_dim": 384,
            "encoder": {"name": "enc"}, "data": {"dataset": "d"}}


@pytest.mark.parametrize("dims", [[64], [32, 64, 128, 256], [200, 300]])
def test_ndcg_figure_ticks_are_the_compressed_dimensions_or_one_bar_per_method(dims):
    import matplotlib.pyplot as plt

    from tava_core.compress.report import ndcg_figure

    fig = ndcg_figure(_report(dims))
    [ax] = fig.axes
    if len(dims) == 1:   # one dimension: a bar per method, named, at its score
        assert [t.get_text() for t in ax.get_xticklabels()] == ["pca", "dive"]
        assert [round(p.get_height(), 4) for p in ax.patches] == [0.51, 0.53]
    else:                # a tick at each dimension, log2-spaced when they span 4x
        assert list(ax.get_xticks()) == dims and [t.get_text() for t in ax.get_xticklabels()] == [str(d) for d in dims]
        assert ax.get_xscale() == ("log" if dims[-1] >= 4 * dims[0] else "linear")
    plt.close(fig)
