import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from _release_fixtures import ORPHAN, ROWS, VIDEO_IMAGE, make_release

from quilt_hf.errors import UserFacingError
from quilt_hf.publishing.importers import ImportConfig, run_import
from quilt_hf.publishing.release import CellError, ImageStore, parse_list_cell, parse_text_cell, video_id_of
from quilt_hf.publishing.tables import load_pairs


def test_list_cells_parse_literals_without_eval():
    assert parse_list_cell("['Breast', 'Renal']") == ["Breast", "Renal"]
    assert parse_list_cell('["it\'s", "x"]') == ["it's", "x"]
    assert parse_list_cell("[]") == parse_list_cell("") == parse_list_cell("nan") == []
    assert parse_list_cell("Breast") == ["Breast"]
    assert parse_list_cell("[['a'], ('b', 3)]") == ["a", "b", "3"]  # the slow path: ast.literal_eval
    with pytest.raises(CellError):
        parse_list_cell("[__import__('os').system('echo pwned')]")  # never evaluated
    assert parse_text_cell("['one', 'two']") == "one two"
    assert parse_text_cell("plain [not a list") == "plain [not a list"
    assert video_id_of(VIDEO_IMAGE) == "dQw4w9WgXcQ"
    assert video_id_of("PMC1_fig2.jpg") == ""


@pytest.mark.parametrize("variant", ["full", "512", "both"])
def test_import_round_trips_every_column_and_counts_missing_and_orphan_images(tmp_path, variant):
    release = make_release(tmp_path / "release")
    parts = {"full": release["parts"]["full"], "512": release["parts"]["512"],
             "both": release["parts"]["512"] + release["parts"]["full"]}[variant]
    result = run_import(ImportConfig(format="quilt1m", lookup=str(release["lookup"]), images=[str(p) for p in parts],
                                     output=str(tmp_path / "imported")))
    assert (result.rows_in, result.rows_out, result.drops, result.orphan_images) == (5, 4, {"missing_image": 1}, 1)
    folder = tmp_path / "imported"
    assert (folder / "orphan_images.txt").read_text().split() == [ORPHAN]
    drop = json.loads((folder / "drops.jsonl").read_text())
    assert (drop["reason"], drop["image_path"]) == ("missing_image", "laion_missing.jpg")
    pairs = load_pairs(folder)
    assert len(pairs) == 4
    first = pairs[0]
    assert first["caption"] == ROWS[0][1]  # the newline inside the quoted cell survives
    assert first["pathology"] == ["Dermatopathology"]
    assert first["roi_text"] == "palisading at the edge nests"
    assert first["med_umls_ids"] == ["C0007117", "C0027882"]
    assert (first["magnification"], first["height"], first["width"]) == (2, 720, 1280)
    assert (first["subset"], first["split"], first["video_id"]) == ("quilt", "train", "dQw4w9WgXcQ")
    assert (first["release_index"], first["single_wsi"], first["not_histology"]) == (0, "False", "False")
    assert first["noisy_text"] == ROWS[0][7] and first["corrected_text"] == ROWS[0][8]
    assert pairs[1]["pathology"] == ["Dermatopathology", "Head and Neck"]
    pubmed = pairs[2]
    assert (pubmed["magnification"], pubmed["med_umls_ids"], pubmed["video_id"]) == (-1, ["C0007124"], "")
    expected_size = (128, 96) if variant == "full" else (64, 48)  # the first source listed wins
    assert pubmed["image"].size == expected_size
    assert pubmed["height"] == expected_size[1]  # filled from the image where the release leaves it blank
    assert pairs[3]["image"].format == "PNG"


def test_import_without_images_keeps_every_row_text_only(tmp_path):
    release = make_release(tmp_path / "release")
    result = run_import(ImportConfig(format="quilt1m", lookup=str(release["lookup"]), output=str(tmp_path / "out")))
    assert (result.rows_out, result.drops) == (5, {})
    assert load_pairs(tmp_path / "out")["image"] == [None] * 5


def test_bad_rows_are_recorded_drops_not_crashes(tmp_path):
    release = make_release(tmp_path / "release")
    with release["lookup"].open("a", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["5", "bad list", "x.jpg", "laion", "train", "['unclosed", "", "", "", "[]", "", "", "", "", ""])
        writer.writerow(["6", "too few fields"])
    result = run_import(ImportConfig(format="quilt1m", lookup=str(release["lookup"]), output=str(tmp_path / "out")))
    assert result.rows_in == 7 and result.rows_out == 5
    assert result.drops == {"bad_cell": 1, "malformed_row": 1}


def test_import_refuses_a_lookup_without_the_release_columns_and_keeps_old_output(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(UserFacingError, match="missing columns"):
        run_import(ImportConfig(format="quilt1m", lookup=str(bad), output=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_image_store_reads_zip_members_in_place(tmp_path):
    release = make_release(tmp_path / "release")
    with ImageStore(release["parts"]["full"]) as store:
        assert len(store) == 4 and VIDEO_IMAGE in store
        assert store.read("images/" + VIDEO_IMAGE)[:2] == b"\xff\xd8"  # looked up by file name
    assert not list((tmp_path / "release").glob("images"))  # nothing unpacked


@pytest.mark.slow
def test_import_streams_a_million_rows_in_flat_memory(tmp_path):
    """1M generated lookup rows, no images: peak memory of the import stays near that of a 50K-row import."""
    def write(path, rows):
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["", "caption", "image_path", "subset", "split", "pathology", "roi_text", "noisy_text",
                             "corrected_text", "med_umls_ids", "magnification", "height", "width"])
            for i in range(rows):
                writer.writerow([i, f"caption {i} of a lymph node", f"abcdefghij{i % 7}_image_{i:08x}-0000.jpg",
                                 "quilt", "train", "['Hematopathology']", "", "", "", "['C0024204']", "1", "", ""])

    def peak_mb(rows):
        lookup = tmp_path / f"lookup{rows}.csv"
        write(lookup, rows)
        code = ("import resource, sys; from quilt_hf.publishing.importers import ImportConfig, run_import; "
                f"r = run_import(ImportConfig(format='quilt1m', lookup={str(lookup)!r}, output={str(tmp_path / str(rows))!r})); "
                "print(r.rows_out, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        assert int(out[0]) == rows
        return int(out[1])

    small, large = peak_mb(50_000), peak_mb(1_000_000)
    assert large < small + 150, f"peak memory grew from {small} MB to {large} MB with 20x the rows"


def _jpeg_file(path, seed):
    from factories import histology_like_image
    from PIL import Image

    Image.fromarray(histology_like_image(seed, (32, 48))).save(path, format="JPEG")


def test_image_caption_folder_and_tables_keep_subset_and_provenance(tmp_path):
    folder = tmp_path / "laion_subset"
    (folder / "part0").mkdir(parents=True)
    _jpeg_file(folder / "part0" / "a.jpg", 1)
    (folder / "part0" / "a.txt").write_text("an H&E image of a lymph node")
    _jpeg_file(folder / "part0" / "b.jpg", 2)  # no caption file
    result = run_import(ImportConfig(format="folder", source=str(folder), output=str(tmp_path / "f")))
    assert (result.rows_out, result.drops) == (1, {"no_text": 1})
    row = load_pairs(tmp_path / "f")[0]
    assert (row["subset"], row["provenance"], row["caption"]) == ("laion_subset", "part0/a.jpg", "an H&E image of a lymph node")
    # JSONL with a URL (never fetched; found in the given cache), a relative path and a broken image.
    (tmp_path / "cache").mkdir()
    _jpeg_file(tmp_path / "cache" / "fig1.jpg", 3)
    (tmp_path / "cache" / "manifest.csv").write_text("url,path\nhttps://www.ncbi.nlm.nih.gov/pmc/fig1.jpg?x=1,fig1.jpg\n")
    _jpeg_file(tmp_path / "local.jpg", 4)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    lines = [{"url": "https://www.ncbi.nlm.nih.gov/pmc/fig1.jpg?x=1", "text": "PMC figure"},
             {"url": "local.jpg", "text": "a local figure", "split": "test"},
             {"url": "broken.jpg", "text": "broken"}]
    (tmp_path / "pmc.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n{not json\n")
    result = run_import(ImportConfig(format="table", source=str(tmp_path / "pmc.jsonl"), image_column="url",
                                     text_column="text", subset="pubmed", url_cache=str(tmp_path / "cache"),
                                     output=str(tmp_path / "t")))
    assert result.rows_in == 4 and result.rows_out == 2
    assert result.drops == {"unreadable_image": 1, "malformed_row": 1}
    pairs = load_pairs(tmp_path / "t")
    assert pairs["subset"] == ["pubmed", "pubmed"] and pairs["split"] == ["", "test"]
    assert pairs["provenance"] == ["pmc.jsonl:0", "pmc.jsonl:1"] and pairs[0]["image"].size == (48, 32)


def test_any_datasets_dataset_with_an_image_and_a_text_column(tmp_path):
    from datasets import Dataset, Features, Image, Value
    from factories import histology_like_image
    from PIL import Image as PILImage

    images = [PILImage.fromarray(histology_like_image(s, (16, 16))) for s in range(3)]
    Dataset.from_dict({"img": images, "sentence": ["one", "two", ""]},
                      features=Features({"img": Image(), "sentence": Value("string")})).save_to_disk(str(tmp_path / "ds"))
    result = run_import(ImportConfig(format="hf", source=str(tmp_path / "ds"), image_column="img", text_column="sentence",
                                     output=str(tmp_path / "out")))
    assert (result.rows_out, result.drops) == (2, {"no_text": 1})
    pairs = load_pairs(tmp_path / "out")
    assert pairs["caption"] == ["one", "two"] and pairs["subset"] == ["ds", "ds"]
    with pytest.raises(UserFacingError, match="no column"):
        run_import(ImportConfig(format="hf", source=str(tmp_path / "ds"), image_column="image", output=str(tmp_path / "x")))


def test_url_cache_matches_the_full_url_not_the_file_name(tmp_path):
    """Four URLs end in fig1.jpg; each finds its own download (manifest, img2dataset sidecar, SHA-256 name) or none."""
    import hashlib

    from PIL import Image

    cache = tmp_path / "cache"
    (cache / "00000").mkdir(parents=True)
    sizes = {}

    def jpeg(path, width):
        Image.fromarray(np.full((8, width, 3), 90, np.uint8)).save(path, format="JPEG")
        sizes[path.name] = width

    urls = [f"https://{host}.org/figures/fig1.jpg" for host in ("manifest", "img2dataset", "sha", "missing")]
    jpeg(cache / "fig1.jpg", 10)  # the manifest's file for the first URL, under the shared file name
    (cache / "manifest.jsonl").write_text(json.dumps({"url": urls[0], "path": "fig1.jpg"}) + "\n")
    jpeg(cache / "00000" / "000000001.jpg", 20)  # img2dataset: <key>.jpg + <key>.json
    (cache / "00000" / "000000001.json").write_text(json.dumps({"url": urls[1], "status": "success", "key": "000000001"}))
    jpeg(cache / (hashlib.sha256(urls[2].encode()).hexdigest() + ".jpg"), 30)
    (tmp_path / "t.csv").write_text("image,caption\n" + "".join(f"{u},caption {i}\n" for i, u in enumerate(urls)))
    result = run_import(ImportConfig(format="table", source=str(tmp_path / "t.csv"), url_cache=str(cache),
                                     output=str(tmp_path / "out")))
    assert (result.rows_out, result.drops) == (3, {"url_not_fetched": 1})  # the 4th URL was never downloaded
    pairs = load_pairs(tmp_path / "out")
    assert [image.size[0] for image in pairs["image"]] == [10, 20, 30]
    assert pairs["caption"] == ["caption 0", "caption 1", "caption 2"]


def test_hf_import_takes_every_split_unless_one_is_named(tmp_path):
    from datasets import Dataset, DatasetDict, Features, Image, Value
    from factories import histology_like_image
    from PIL import Image as PILImage

    features = Features({"img": Image(), "text": Value("string")})

    def part(seeds):
        return Dataset.from_dict({"img": [PILImage.fromarray(histology_like_image(s, (16, 16))) for s in seeds],
                                  "text": [f"caption {s}" for s in seeds]}, features=features)

    DatasetDict({"train": part([1, 2]), "validation": part([3]), "test": part([4, 5])}).save_to_disk(str(tmp_path / "ds"))
    result = run_import(ImportConfig(format="hf", source=str(tmp_path / "ds"), image_column="img", text_column="text",
                                     output=str(tmp_path / "all")))
    assert result.rows_in == result.rows_out == 5
    pairs = load_pairs(tmp_path / "all")
    assert sorted(zip(pairs["split"], pairs["caption"])) == [
        ("test", "caption 4"), ("test", "caption 5"), ("train", "caption 1"), ("train", "caption 2"),
        ("validation", "caption 3")]
    assert "ds/test:1" in pairs["provenance"]
    run_import(ImportConfig(format="hf", source=str(tmp_path / "ds"), image_column="img", text_column="text",
                            split="test", output=str(tmp_path / "test")))
    assert load_pairs(tmp_path / "test")["caption"] == ["caption 4", "caption 5"]
    with pytest.raises(UserFacingError, match="has the splits"):
        run_import(ImportConfig(format="hf", source=str(tmp_path / "ds"), image_column="img", text_column="text",
                                split="dev", output=str(tmp_path / "dev")))


def test_url_cache_manifest_paths_outside_the_folder_are_ignored(tmp_path, caplog):
    from PIL import Image

    from quilt_hf.publishing.importers import UrlCache

    cache = tmp_path / "cache"
    cache.mkdir()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "secret.jpg", format="JPEG")
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(cache / "inside.jpg", format="JPEG")
    (cache / "manifest.csv").write_text(
        "url,path\nhttps://a.org/x.jpg,../secret.jpg\n"
        f"https://b.org/y.jpg,{tmp_path / 'secret.jpg'}\nhttps://c.org/z.jpg,inside.jpg\n"
    )
    with caplog.at_level("WARNING"):
        found = UrlCache(cache)
    assert found.path("https://a.org/x.jpg") is None and found.path("https://b.org/y.jpg") is None
    assert found.path("https://c.org/z.jpg") == (cache / "inside.jpg").resolve()
    assert "2 manifest path(s) point outside the folder" in caplog.text
