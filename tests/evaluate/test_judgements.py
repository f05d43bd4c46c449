"""Label-free judgements: on a corpus without qrels, the teacher's own top 10 stand in for them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_texts, tiny_topic_beir, write_dataset

from tava_core.config import EncoderSpec, IngestConfig
from tava_core.evaluate import load_retrieval_data
from tava_core.evaluate.judgements import JUDGED_SPLIT, judge_with_teacher, query_like_texts, teacher_top_k
from tava_core.home import TavaHome


@pytest.fixture()
def plain(tava_home) -> tuple[TavaHome, Path]:
    """An ingested plain corpus (one ``texts`` collection, no queries, no qrels) of 60 texts."""
    home = TavaHome(tava_home)
    return home, write_dataset(tava_home, "plain", {"texts": synthetic_texts(60)})


def teacher_vectors(home: TavaHome, dataset: Path, model: Path) -> Path:
    from tava_core.embed import EmbedConfig, embed_dataset

    result = embed_dataset(EmbedConfig(dataset=str(dataset), encoder=EncoderSpec(model=str(model))), home)
    return result["texts"]


def test_spans_carry_their_documents_id_and_are_seeded(plain):
    _, dataset = plain
    ids, spans, what = query_like_texts(dataset, 12, seed=0)
    texts = dict(zip([f"t{i}" for i in range(60)], synthetic_texts(60), strict=True))
    assert len(ids) == len(set(ids)) == 12 and "span views of 12 of the 60 documents" == what
    for doc_id, span in zip(ids, spans, strict=True):
        assert span and span in " ".join(texts[doc_id].split())     # a piece of its own document
    assert query_like_texts(dataset, 12, seed=0) == (ids, spans, what)
    assert query_like_texts(dataset, 12, seed=1)[0] != ids


def test_a_query_log_is_preferred_to_spans(tava_home, tmp_path):
    from tava_core.ingest import ingest

    home = TavaHome(tava_home)
    source = tiny_topic_beir(tmp_path / "topics")
    (source / "qrels" / "test.tsv").unlink()      # queries without judgements: a query log
    ingest(IngestConfig(source=str(source), name="log"), home)
    ids, texts, what = query_like_texts(home.dataset_dir("log"), 4, seed=0)
    assert all(i.startswith("q-") for i in ids) and what == "4 of the dataset's 10 queries"
    assert all(t.startswith("what happens to the") for t in texts)


def test_the_teacher_top_k_leaves_a_query_own_document_out():
    rng = np.random.default_rng(0)
    documents = rng.normal(size=(30, 8)).astype(np.float32)
    doc_ids = [f"d{i}" for i in range(30)]
    queries = documents[[3, 7]] + 0.01          # each nearest its own document
    assert teacher_top_k(["q3", "q7"], queries, doc_ids, documents, 5)[0][0] == "d3"
    judged = teacher_top_k(["d3", "d7"], queries, doc_ids, documents, 5)   # spans: their document's id
    assert "d3" not in judged[0] and "d7" not in judged[1] and all(len(row) == 5 for row in judged)


@pytest.mark.usefixtures("prefect_harness")
def test_the_teacher_scores_one_on_its_own_judgements_and_another_encoder_less(plain, tiny_model_dir, tmp_path,
                                                                             capsys):
    from flows.cli import main

    home, dataset = plain
    vectors = teacher_vectors(home, dataset, tiny_model_dir)
    out = tmp_path / "judged"
    teacher = EncoderSpec(model=str(tiny_model_dir))
    record = judge_with_teacher(dataset, vectors, teacher, out, queries=20)
    assert not record["reused"] and record["queries"] == 20 and record["split"] == JUDGED_SPLIT
    assert judge_with_teacher(dataset, vectors, teacher, out, queries=20)["reused"]
    assert not judge_with_teacher(dataset, vectors, teacher, out, queries=21)["reused"]   # other queries: again

    # as a user does it: `tava judge`, then `tava evaluate --judgements`
    main(["--home", str(home.root), "judge", "--dataset", "plain", "--teacher", str(tiny_model_dir), "--queries", "20"])
    printed = capsys.readouterr().out
    directory = printed.split("judgements: ")[1].split(" (")[0]
    judge_with_teacher(dataset, vectors, teacher, out, queries=20)       # the same judging, by hand
    qrels = f"qrels/{JUDGED_SPLIT}.tsv"
    assert (Path(directory) / qrels).read_text() == (out / qrels).read_text()
    data = load_retrieval_data(str(dataset), JUDGED_SPLIT, home, directory)
    assert len(data.query_ids) == 20 and all(len(docs) == 10 for docs in data.qrels.values())
    assert data.document_collection == "texts" and data.same_id_queries == 20   # each span's source left out

    # the same teacher with a whisper of other weights: a different ranking, so an agreement under 1
    other = _perturbed(tiny_model_dir, tmp_path / "other")
    main(["--home", str(home.root), "evaluate", "--dataset", "plain", "--judgements", directory, "--split", JUDGED_SPLIT,
          "--teacher", str(tiny_model_dir), "--adapted", str(other), "--modes", "teacher/teacher", "--modes",
          "adapted/teacher", "--quantization", "int8", "--matryoshka-dims", "16", "--no-run-mteb"])
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{"):])
    rows = {row["mode"]: row for row in report["rows"] if row["variant"] == "full"}
    assert rows["teacher/teacher"]["ndcg_at_10"] == pytest.approx(1.0)
    assert rows["teacher/teacher"]["recall_at_100"] == pytest.approx(1.0)
    assert 0.2 < rows["adapted/teacher"]["ndcg_at_10"] < 0.999


def _perturbed(base: Path, out: Path) -> Path:
    import shutil

    import torch
    from transformers import BertModel

    shutil.copytree(base, out)
    model = BertModel.from_pretrained(out)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * p.std() * torch.randn_like(p))
    model.save_pretrained(out)
    return out


def test_without_qrels_or_judgements_an_ingested_corpus_says_how_to_score_it(plain):
    from tava_core.errors import InputError

    home, dataset = plain
    with pytest.raises(InputError, match="no queries with judgements") as info:
        load_retrieval_data(str(dataset), "test", home)
    assert "teacher judge" in str(info.value)


def test_the_command_line_check_names_the_split_and_the_label_free_way(plain, tmp_path):
    from flows.commands import checks
    from tava_core.errors import InputError

    home, dataset = plain
    with pytest.raises(InputError, match=r"no qrels for it \(splits with qrels: none\)") as info:
        checks.judged_split(home, "plain", "test", None)
    assert "--judgements DIR --split teacher-top10" in str(info.value)
    beir = tiny_topic_beir(tmp_path / "topics")
    with pytest.raises(InputError, match=r"splits with qrels: test\)"):
        checks.judged_split(home, str(beir), "dev", None)
    checks.judged_split(home, str(beir), "test", None)                 # judged: passes
    judged = tmp_path / "judged"
    (judged / "qrels").mkdir(parents=True)
    (judged / "qrels" / f"{JUDGED_SPLIT}.tsv").write_text("query-id\tcorpus-id\tscore\n")
    checks.judged_split(home, "plain", JUDGED_SPLIT, str(judged))
    with pytest.raises(InputError, match="pass --split teacher-top10"):
        checks.judged_split(home, "plain", "test", str(judged))
