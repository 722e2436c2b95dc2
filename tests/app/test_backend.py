"""The app's backend: paging with filters, detail, word and meaning search, flags, zero-shot, leaderboard."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the app extra is not installed: pip install 'quilt_hf[app]'")

from quilt_hf.app import leaderboard  # noqa: E402
from quilt_hf.app.backend import AppBackend  # noqa: E402
from quilt_hf.app.search import build_faiss_index, fts_query  # noqa: E402
from quilt_hf.app.store import Filters, PairStore  # noqa: E402
from quilt_hf.flags import load_flags  # noqa: E402


@pytest.fixture
def backend(pairs_dataset, eval_results, tiny_clip_dir, tmp_path):
    return AppBackend(str(pairs_dataset), models=[str(tiny_clip_dir)], results=[str(eval_results)],
                      flags=str(tmp_path / "flags.jsonl"), cache_dir=str(tmp_path / "cache"))


def test_store_pages_and_filters_read_only_the_page(pairs_dataset, tmp_path):
    store = PairStore(pairs_dataset, cache_dir=tmp_path)
    assert store.num_rows == 18
    rows, total = store.page(Filters(), page=1, page_size=5)
    assert total == 18 and [r["_row"] for r in rows] == [5, 6, 7, 8, 9]
    assert "image" in rows[0] and "medical_text" not in rows[0]  # a page reads only the card columns
    validation = store.select(Filters(split="validation"))
    assert len(validation) == 6
    assert all(r["video_id"] == "vid2" for r in store.take(validation, ["video_id"]))
    bone = store.select(Filters(pathology="Bone", magnification=2))
    for record in store.take(bone, ["pathology", "magnification"]):
        assert "Bone" in record["pathology"] and record["magnification"] == 2
    assert len(store.select(Filters(pathology="Bone"))) == 3
    assert store.choices("split") == ["train", "validation"]
    assert "Pulmonary" in store.choices("pathology")


def test_detail_shows_text_columns_and_same_chunk_images(backend):
    text, chunk, flags = backend.detail(0)
    assert "Granulomas" in text and "text window" in text and "histology score" in text
    record = backend.store.take([0], ["video_id", "chunk_id"])[0]
    same = backend.store.same_chunk(0)
    assert 0 in same and len(chunk) == len(same) > 1
    for other in backend.store.take(same, ["video_id", "chunk_id"]):
        assert (other["video_id"], other["chunk_id"]) == (record["video_id"], record["chunk_id"])
    assert flags == "No flags on this pair."


def test_word_search_finds_pairs_containing_every_word(backend):
    rows = backend.search_words("adenocarcinoma glands")
    captions = backend.captions(rows)
    assert rows and all("adenocarcinoma" in c and "glands" in c for c in captions)
    assert backend.search_words("adenocarcinoma osteoid") == []
    assert backend.search_words("granuloma*")  # prefix search
    assert fts_query('he said "x" OR y') == '"he" "said" "x" "OR" "y"'  # operators are quoted, never injected


def test_meaning_search_caches_embeddings_and_ranks_exact_image_first(backend, tiny_clip_dir):
    model = str(tiny_clip_dir)
    image = backend.store.row(4)["image"]
    image_hits, caption_hits = backend.search_meaning(model, image=image)
    assert image_hits[0][0] == 4 and image_hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert len(caption_hits) == 10
    files = list(backend.store.cache_dir.glob("embeddings-*.safetensors"))
    assert len(files) == 1
    assert len(list(backend.store.cache_dir.glob("embeddings-*.faiss"))) == 2  # image and text indexes
    text_hits, _ = backend.search_meaning(model, text="lung granuloma")
    assert len(text_hits) == 18


def test_faiss_ivf_index_finds_the_query_itself():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(60_000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_faiss_index(vectors)
    assert "IVF" in type(index).__name__ or index.ntotal == 60_000
    _, found = index.search(vectors[:20], 1)
    assert (found[:, 0] == np.arange(20)).mean() >= 0.9


def test_flag_is_saved_beside_the_dataset_and_shown(backend, pairs_dataset):
    before = sorted(p.stat().st_mtime_ns for p in pairs_dataset.rglob("*.parquet"))
    backend.flag(3, "wrong_text", "caption is about another slide", "dr a")
    flags = load_flags(backend.flags_path)
    image_id = backend.store.take([3], ["image_id"])[0]["image_id"]
    assert len(flags) == 1 and flags[0]["reason"] == "wrong_text" and flags[0]["image_id"] == image_id
    assert "wrong_text" in backend.detail(3)[2]
    assert len(backend.flags_table()) == 1
    assert sorted(p.stat().st_mtime_ns for p in pairs_dataset.rglob("*.parquet")) == before


def test_zero_shot_uses_the_pipeline_and_scores_sum_to_one(backend, tiny_clip_dir):
    image = backend.store.row(1)["image"]
    scores = backend.zero_shot(str(tiny_clip_dir), image, ["tumour", "normal tissue", " "])
    assert set(scores) == {"tumour", "normal tissue"}
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)


def test_leaderboard_merges_measured_and_published_rows(backend):
    names = backend.leaderboard_names()
    assert names[0] in ("zero-shot · pcam", "retrieval · arch")
    table = backend.leaderboard_table("zero-shot · pcam")
    measured = table[table["model"] == "my-quiltnet"]
    assert measured["top-1 accuracy"].item() == pytest.approx(71.25)
    published = table[table["source"] == leaderboard.PUBLISHED]
    assert set(published["model"]) == {"QuiltNet (paper)", "CLIP (paper)", "PLIP (paper)", "BiomedCLIP (paper)"}
    assert list(table["top-1 accuracy"]) == sorted(table["top-1 accuracy"], reverse=True)
    retrieval = backend.leaderboard_table("retrieval · arch")
    assert retrieval["text→image R@5"].item() == pytest.approx(40.0)


def test_leaderboard_reads_model_index_from_a_model_card(tmp_path):
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    data = ModelCardData(model_name="card-model", eval_results=[EvalResult(
        task_type="zero-shot-image-classification", dataset_type="pcam", dataset_name="PatchCamelyon",
        metric_type="accuracy", metric_value=55.5)])
    ModelCard.from_template(data).save(tmp_path / "README.md")
    entries = leaderboard.entries_from_model_card(str(tmp_path))
    assert entries == [leaderboard.Entry("zero_shot", "pcam", "card-model", leaderboard.MODEL_CARD,
                                         "top-1 accuracy", 55.5)]


def test_curated_folder_with_chunks_and_videos_tables(tmp_path):
    from datasets import Dataset
    from pairs_factory import build_pairs

    pairs = build_pairs(6)
    pairs.save_to_disk(str(tmp_path / "curated" / "pairs"))
    Dataset.from_dict({"image_id": pairs["image_id"], "histology_score": [0.25 + 0.1 * i for i in range(6)]}
                      ).save_to_disk(str(tmp_path / "curated" / "chunks"))
    Dataset.from_dict({"video_id": ["vid0", "vid1"], "url": ["https://www.youtube.com/watch?v=abc", ""],
                       "path": ["/videos/vid0.mp4", "/videos/vid1.mp4"]}).save_to_disk(str(tmp_path / "curated"
                                                                                           / "videos"))
    backend = AppBackend(str(tmp_path / "curated" / "pairs"), cache_dir=str(tmp_path / "cache"))
    assert backend.store.num_rows == 6
    assert backend.flags_path == tmp_path / "curated" / "pairs.flags.jsonl"
    row = pairs["image_id"].index("vid0_0_3")
    text, _, _ = backend.detail(row)
    assert "histology score** 0.550" in text and "watch** https://www.youtube.com/watch?v=abc&t=3s" in text
    text, _, _ = backend.detail(pairs["video_id"].index("vid1"))
    assert "/videos/vid1.mp4" in text
    assert backend.search_words("osteoid") == [5]


def test_quilt_app_refuses_a_missing_or_wrong_dataset(tmp_path, caplog):
    from quilt_hf.cli import main

    assert main(["app", "--dataset", str(tmp_path / "missing")]) == 1
    assert "no such folder" in caplog.text
    (tmp_path / "empty").mkdir()
    assert main(["app", "--dataset", str(tmp_path / "empty")]) == 1
    assert "no parquet files" in caplog.text
