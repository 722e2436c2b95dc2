import io
import json

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from _release_fixtures import make_release
from datasets import load_dataset
from factories import histology_like_image
from PIL import Image, ImageEnhance

from quilt_hf.errors import UserFacingError
from quilt_hf.publishing import publish as publish_module
from quilt_hf.publishing.dedup import fingerprint, near_duplicate_groups
from quilt_hf.publishing.importers import ImportConfig, run_import
from quilt_hf.publishing.merge import assign_splits
from quilt_hf.publishing.publish import PublishConfig, run_publish


def _jpeg(image: Image.Image, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _planted(image: np.ndarray) -> dict[str, bytes]:
    pil = Image.fromarray(image)
    w, h = pil.size
    return {
        "exact": _jpeg(pil),
        "reencoded": _jpeg(pil, quality=60),
        "resized": _jpeg(pil.resize((w // 2, h // 2))),
        "cropped": _jpeg(pil.crop((3, 2, w - 2, h - 3))),
        "jittered": _jpeg(ImageEnhance.Color(ImageEnhance.Brightness(pil).enhance(1.1)).enhance(0.85)),
    }


def test_planted_duplicates_are_found_and_distinct_images_never_merged():
    originals = [histology_like_image(seed, (160, 160)) for seed in range(40)]
    items, truth = [], []
    for index, image in enumerate(originals):
        items.append(fingerprint(_jpeg(Image.fromarray(image))))
        truth.append(index)
        if index < 20:
            for data in _planted(image).values():
                items.append(fingerprint(data))
                truth.append(index)
    groups = near_duplicate_groups(items)
    truth = np.array(truth)
    for original in range(40):
        assert len(set(groups[truth == original])) == 1, f"copies of image {original} were not all merged"
    assert len(set(groups.tolist())) == 40, "two distinct images were merged"


def test_splits_never_split_a_video_or_an_image():
    # rows: (video, image). v1 and v2 share image i2, so v1, v2 and all their rows form one group.
    videos = ["v1", "v1", "v2", "v3", "", ""]
    images = ["i1", "i2", "i2", "i3", "i4", "i4"]
    for seed in range(20):
        splits, groups, _ = assign_splits([v + str(seed) if v else v for v in videos],
                                          [i + str(seed) for i in images], None, 0.4, 0.3)
        assert groups == 3
        assert len({splits[0], splits[1], splits[2]}) == 1 and splits[4] == splits[5]
    release = ["train", "test", "train", "val", "train", ""]
    splits, _, moves = assign_splits(videos, images, release, 0.1, 0.0)
    assert splits[:3] == ["test"] * 3 and splits[3] == "validation" and moves == 2  # the most held-out side wins


def _other_source(tmp_path, duplicate_of: bytes):
    """A CSV table (the PMC-OA/OpenPath shape): one near duplicate of a release image, one URL, one new image."""
    folder = tmp_path / "pmc"
    folder.mkdir()
    (folder / "dup.jpg").write_bytes(duplicate_of)
    (folder / "new.jpg").write_bytes(_jpeg(Image.fromarray(histology_like_image(77, (96, 128)))))
    (folder / "table.csv").write_text(
        "image,caption\n"
        "dup.jpg,the same carcinoma field from a paper\n"
        "https://example.org/figs/remote.jpg,a figure we cannot fetch offline\n"
        "new.jpg,a new lymph node figure\n"
    )
    return folder / "table.csv"


@pytest.mark.slow
def test_release_and_other_source_merge_into_a_loadable_hub_folder(tmp_path):
    release = make_release(tmp_path / "release")
    run_import(ImportConfig(format="quilt1m", lookup=str(release["lookup"]), images=[str(p) for p in release["parts"]["full"]],
                            output=str(tmp_path / "release_pairs")))
    video_image = release["images"]["dQw4w9WgXcQ_image_0b9f6a2e-5c1d-4d8e-9f00-aa11bb22cc33.jpg"]
    recoloured = ImageEnhance.Brightness(Image.fromarray(video_image)).enhance(1.08)
    table = _other_source(tmp_path, _jpeg(recoloured, quality=70))
    imported = run_import(ImportConfig(format="table", source=str(table), subset="pmc_extra", output=str(tmp_path / "pmc_pairs")))
    assert imported.drops == {"url_not_fetched": 1} and imported.rows_out == 2
    out = tmp_path / "hub"
    run_publish(PublishConfig(dataset=[str(tmp_path / "release_pairs"), str(tmp_path / "pmc_pairs")], output=str(out),
                              keep_release_split=True))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["merge"]["near_duplicate_images"] == 1  # the recoloured paper figure is the video image
    everything = load_dataset(str(out))
    assert sum(len(s) for s in everything.values()) == 6  # 4 release rows + 2 table rows, none lost
    rows = [r for s in everything.values() for r in s]
    merged = [r for r in rows if r["caption"] == "the same carcinoma field from a paper"][0]
    assert merged["image_id"] == "dQw4w9WgXcQ_image_0b9f6a2e-5c1d-4d8e-9f00-aa11bb22cc33"  # one image, all captions
    assert merged["subset"] == "pmc_extra" and merged["provenance"] == "table.csv:0"
    same_image = {r["split"] for r in rows if r["image_id"] == merged["image_id"]}
    assert same_image == {"train"}  # the release's split, shared by every caption of the image
    quilt = load_dataset(str(out), "quilt")
    assert set(quilt) == {"train"} and len(quilt["train"]) == 2
    assert quilt["train"][0]["pathology"] == ["Dermatopathology"]
    assert set(load_dataset(str(out), "pubmed")) == {"validation"}
    from huggingface_hub import DatasetCard

    card_data = DatasetCard.load(out / "README.md").data  # the card's metadata parses as a Hub dataset card
    assert card_data.pretty_name and card_data.license == "other"
    card = (out / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert {c["config_name"] for c in metadata["configs"]} == {"all", "quilt", "pubmed", "openpath", "pmc_extra"}
    for plot in ("pairs_per_subset", "caption_length", "images_per_video", "pathology", "magnification"):
        assert f"(stats/{plot}.png)" in card
        assert Image.open(out / "stats" / f"{plot}.png").size[0] > 100
    assert "PMC-OA" in card and "release_pairs" in card  # source and provenance per subset


def test_decontamination_removes_benchmark_images_and_counts_them(tmp_path, monkeypatch):
    benchmark = [histology_like_image(500 + i, (64, 64)) for i in range(3)]
    folder = tmp_path / "pmc"
    folder.mkdir()
    lines = ["image,caption"]
    for i in range(6):
        image = benchmark[i] if i < 2 else histology_like_image(900 + i, (64, 64))
        (folder / f"{i}.jpg").write_bytes(_jpeg(Image.fromarray(image).resize((96, 96))))  # resized copies
        lines.append(f"{i}.jpg,caption {i}")
    (folder / "t.csv").write_text("\n".join(lines) + "\n")
    run_import(ImportConfig(format="table", source=str(folder / "t.csv"), output=str(tmp_path / "pairs")))
    monkeypatch.setattr(publish_module, "_benchmark_fingerprints",
                        lambda names: {"toy_bench": [fingerprint(_jpeg(Image.fromarray(b))) for b in benchmark]})
    out = run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(tmp_path / "hub"),
                                    exclude_benchmarks=["toy_bench"]))
    stats = json.loads((out / "stats.json").read_text())["merge"]
    assert stats["contaminated_rows"] == {"toy_bench": 2}
    kept = load_dataset(str(out))
    assert sorted(r["caption"] for s in kept.values() for r in s) == [f"caption {i}" for i in range(2, 6)]
    drops = [json.loads(line) for line in (out / "drops.jsonl").read_text().splitlines()]
    assert [d["reason"] for d in drops] == ["benchmark:toy_bench"] * 2


def test_the_offline_benchmark_can_be_excluded_by_name(tmp_path):
    release = make_release(tmp_path / "release")
    run_import(ImportConfig(format="quilt1m", lookup=str(release["lookup"]), images=[str(p) for p in release["parts"]["full"]],
                            output=str(tmp_path / "pairs")))
    out = run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(tmp_path / "hub"),
                                    exclude_benchmarks=["quilt_offline_patches"]))
    stats = json.loads((out / "stats.json").read_text())["merge"]
    assert stats["contaminated_rows"] == {"quilt_offline_patches": 0}


def test_a_crash_while_publishing_leaves_the_previous_version_whole(tmp_path, monkeypatch):
    release = make_release(tmp_path / "release")
    run_import(ImportConfig(format="quilt1m", lookup=str(release["lookup"]), output=str(tmp_path / "pairs")))
    out = run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(tmp_path / "hub")))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish_module, "write_plots", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(out), overwrite=True))
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".hub.*"))
    # A crash between the two renames of the swap: the next run puts the old version back first.
    out.rename(tmp_path / ".hub.previous")  # the old version renamed aside, the new one not yet in
    from quilt_hf.publishing.hub import recover_folder

    recover_folder(out)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_publish_refuses_missing_inputs(tmp_path):
    with pytest.raises(UserFacingError, match="no such folder"):
        run_publish(PublishConfig(dataset=[str(tmp_path / "nope")], output=str(tmp_path / "hub")))


def test_shards_are_bounded(tmp_path):
    release = make_release(tmp_path / "release")
    run_import(ImportConfig(format="quilt1m", lookup=str(release["lookup"]), images=[str(p) for p in release["parts"]["full"]],
                            output=str(tmp_path / "pairs")))
    out = run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(tmp_path / "hub"), max_shard_bytes=1,
                                    val_fraction=0.0))
    shards = sorted((out / "data" / "quilt").glob("*.parquet"))
    assert len(shards) == 2 and sum(pq.read_metadata(s).num_rows for s in shards) == 2


def test_flags_follow_rows_merged_as_duplicates(tmp_path):
    """A flag on one row of a merged pair drops the whole pair; an image flag drops every caption of the merged
    image; each dropped row is counted with its reason (rows in = rows out + drops)."""
    from quilt_hf.flags import add_flag, default_flags_path

    folder = tmp_path / "figs"
    folder.mkdir()
    a, b, c = (histology_like_image(seed, (96, 96)) for seed in (11, 12, 13))
    files = {
        "a.jpg": _jpeg(Image.fromarray(a)),
        "a_recoloured.jpg": _jpeg(ImageEnhance.Brightness(Image.fromarray(a)).enhance(1.08), quality=70),
        "a_reencoded.jpg": _jpeg(Image.fromarray(a), quality=60),
        "b.jpg": _jpeg(Image.fromarray(b)),
        "b_resized.jpg": _jpeg(Image.fromarray(b).resize((48, 48))),
        "c.jpg": _jpeg(Image.fromarray(c)),
    }
    captions = ["caption A", "caption A", "caption B", "caption C", "caption D", "caption E"]
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "t.csv").write_text("image,caption\n" + "".join(f"{n},{c}\n" for n, c in zip(files, captions)))
    run_import(ImportConfig(format="table", source=str(folder / "t.csv"), output=str(tmp_path / "pairs")))
    flags = default_flags_path(tmp_path / "pairs")
    add_flag(flags, image_id="a_recoloured", caption="caption A", reason="wrong_text")  # the pair (a, caption A)
    add_flag(flags, image_id="b_resized", caption="caption D", reason="not_histology")  # the image b, all captions

    out = run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(tmp_path / "hub"), val_fraction=0.0,
                                    drop_flagged=True))
    kept = load_dataset(str(out), split="train")
    assert sorted(kept["caption"]) == ["caption B", "caption E"]
    assert kept[kept["caption"].index("caption B")]["image_id"] == "a"  # merged into the group's first image
    drops = sorted((d["image_id"], d["reason"]) for d in map(json.loads, (out / "drops.jsonl").read_text().splitlines()))
    assert drops == [("a", "flagged:wrong_text"), ("a_recoloured", "flagged:wrong_text"),
                     ("b", "flagged:not_histology"), ("b_resized", "flagged:not_histology")]
    merge = json.loads((out / "stats.json").read_text())["merge"]
    assert (merge["flagged_rows"], merge["flagged_dropped"], merge["dropped_rows"]) == (2, 4, 4)
    assert sum(merge["rows_in"].values()) == 6

    # Without --drop_flagged the flags change nothing: only the repeated pair (a, caption A) is merged away.
    out = run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(tmp_path / "all"), val_fraction=0.0))
    assert len(load_dataset(str(out), split="train")) == 5


@pytest.mark.slow
def test_publish_memory_is_flat_in_the_rows(tmp_path):
    """Peak memory of publishing 500K text-only rows stays within 1.25x of publishing 50K (the same code paths as
    a release import: parquet shards in, Hub-layout folder out)."""
    import subprocess
    import sys

    import pyarrow as pa

    from quilt_hf.publishing.tables import pair_features

    features = pair_features()
    schema = features.arrow_schema

    def table(rows: int, folder):
        folder.mkdir()
        for start in range(0, rows, 100_000):
            index = range(start, min(rows, start + 100_000))
            values = {
                "caption": [f"caption {i}: a field of tissue with atypical nuclei" for i in index],
                "image_id": [f"img{i // 3}" for i in index],  # three captions per image
                "video_id": [f"v{i % 997:010d}" if i % 4 == 0 else "" for i in index],
                "subset": [("quilt", "openpath", "pubmed", "laion")[i % 4] for i in index],
                "split": ["train" if i % 10 else "val" for i in index],
                "pathology": [["Breast"] for _ in index],
                "magnification": [i % 3 for _ in [0] for i in index],
            }
            columns = [pa.array(values[f.name], f.type) if f.name in values else pa.nulls(len(index), f.type)
                       for f in schema]
            pa.parquet.write_table(pa.Table.from_arrays(columns, schema=schema), folder / f"pairs-{start:08d}.parquet")

    def peak_mb(rows: int) -> int:
        table(rows, tmp_path / f"in{rows}")
        code = ("import resource; from quilt_hf.publishing.publish import PublishConfig, run_publish; "
                f"run_publish(PublishConfig(dataset=[{str(tmp_path / f'in{rows}')!r}], output={str(tmp_path / f'out{rows}')!r}, "
                "keep_release_split=True)); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout.split()[-1])

    import pyarrow.parquet  # noqa: F401  (pa.parquet)

    small, large = peak_mb(50_000), peak_mb(500_000)
    assert large <= 1.25 * small, f"peak memory grew from {small} MB to {large} MB with 10x the rows"
    stats = json.loads((tmp_path / "out500000" / "stats.json").read_text())
    assert stats["stats"]["rows"] + stats["merge"]["dropped_rows"] == 500_000


def test_rows_sharing_an_image_point_at_one_image_and_only_near_duplicates_take_its_bytes(tmp_path, monkeypatch):
    """Exact copies (one file for several rows, or the same bytes under another name) keep their own, identical
    bytes and take the group's id; a near duplicate takes the first image's bytes. The writer holds bytes only for
    images that near duplicates take (in the release about 1.5 rows share each image)."""
    from quilt_hf.publishing import merge as merge_module

    folder = tmp_path / "figs"
    folder.mkdir()
    a = histology_like_image(21, (96, 96))
    (folder / "a.jpg").write_bytes(_jpeg(Image.fromarray(a)))
    (folder / "a_copy.jpg").write_bytes((folder / "a.jpg").read_bytes())
    (folder / "a_reencoded.jpg").write_bytes(_jpeg(Image.fromarray(a), quality=60))
    rows = [("a.jpg", "one"), ("a.jpg", "two"), ("a_copy.jpg", "three"), ("a_reencoded.jpg", "four")]
    (folder / "t.csv").write_text("image,caption\n" + "".join(f"{n},{c}\n" for n, c in rows))
    run_import(ImportConfig(format="table", source=str(folder / "t.csv"), output=str(tmp_path / "pairs")))
    plans = []
    real_plan = merge_module.plan_merge

    def spy(*args, **kwargs):
        plans.append(real_plan(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr("quilt_hf.publishing.publish.plan_merge", spy)
    out = run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(tmp_path / "hub"), val_fraction=0.0))
    kept = load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))  # no shared cache
    assert sorted(kept["caption"]) == ["four", "one", "three", "two"]
    assert set(kept["image_id"]) == {"a"}
    original = (folder / "a.jpg").read_bytes()
    published = kept.cast_column("image", datasets.Image(decode=False))["image"]
    assert all(cell["bytes"] == original for cell in published)
    plan = plans[0]
    assert len(plan.rewrite_rows) == 3 and plan.rewrite_bytes.tolist() == [False, False, True]


def test_a_crash_while_writing_rows_closes_the_open_shards(tmp_path, monkeypatch):
    from quilt_hf.publishing.hub import ShardSetWriter

    release = make_release(tmp_path / "release")
    run_import(ImportConfig(format="quilt1m", lookup=str(release["lookup"]), output=str(tmp_path / "pairs")))
    real_write_merged, aborted = publish_module.write_merged, []

    def write_then_fail(sources, plan, features, parts, *args, **kwargs):
        real_write_merged(sources, plan, features, parts, *args, **kwargs)  # shards are open now
        raise RuntimeError("disk full")

    real_abort = ShardSetWriter.abort

    def spy(self):
        aborted.append(bool(self._writers) or bool(self._buffers))
        real_abort(self)

    monkeypatch.setattr(publish_module, "write_merged", write_then_fail)
    monkeypatch.setattr(ShardSetWriter, "abort", spy)
    with pytest.raises(RuntimeError, match="disk full"):
        run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(tmp_path / "hub")))
    assert aborted == [True]  # aborted with shards or rows pending
    assert not (tmp_path / "hub").exists() and not list(tmp_path.glob(".hub.*"))


def test_a_bare_pairs_table_without_pathology_or_magnification_publishes(tmp_path):
    release = make_release(tmp_path / "release")
    run_import(ImportConfig(format="quilt1m", lookup=str(release["lookup"]), output=str(tmp_path / "pairs")))
    bare = tmp_path / "bare"
    bare.mkdir()
    for shard in sorted((tmp_path / "pairs").glob("pairs-*.parquet")):
        table = pq.read_table(shard)
        pq.write_table(table.drop_columns([c for c in ("pathology", "magnification") if c in table.column_names]),
                       bare / shard.name)
    out = run_publish(PublishConfig(dataset=[str(bare)], output=str(tmp_path / "hub")))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stats"]["rows"] == sum(pq.read_metadata(p).num_rows for p in bare.glob("*.parquet")) > 0
    assert stats["stats"]["pathology"] == {} and stats["stats"]["magnification"] == {"not stated": 5}
