import io
import json

import numpy as np
import pytest
from datasets import load_dataset
from factories import histology_like_image
from PIL import Image

from quilt_hf.errors import ModelLoadError
from quilt_hf.publishing.dedup import fingerprint
from quilt_hf.publishing.embedding_dedup import ImageEmbedder
from quilt_hf.publishing.importers import ImportConfig, run_import
from quilt_hf.publishing.publish import PublishConfig, run_publish
from quilt_hf.publishing.similarity import connected_groups


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def test_embedder_gives_unit_vectors_and_none_for_unreadable_images(tiny_clip_dir):
    embedder = ImageEmbedder(str(tiny_clip_dir), batch_size=2)
    vectors = embedder.embed([_jpeg(histology_like_image(1, (64, 64))), b"not an image", None,
                              _jpeg(histology_like_image(2, (64, 64)))])
    assert vectors[1] is None and vectors[2] is None
    assert vectors[0].shape == (16,) and abs(float(np.linalg.norm(vectors[3])) - 1) < 1e-5


def test_a_broken_dedup_model_fails_publish_before_any_work(tmp_path):
    (tmp_path / "pairs").mkdir()
    with pytest.raises(ModelLoadError, match="--dedup_model"):
        run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(tmp_path / "hub"),
                                  dedup_model=str(tmp_path / "no_model")))
    assert not (tmp_path / "hub").exists()


@pytest.mark.slow
def test_publish_merges_images_by_embedding_on_top_of_the_fingerprint(tmp_path):
    from quilt_hf.models import offline_model_path

    model = offline_model_path("clip")
    if model is None:
        pytest.skip("needs the offline QuiltNet demo model (make models)")
    images = [histology_like_image(300 + i, (96, 96)) for i in range(6)]
    images.append(np.ascontiguousarray(images[0][:, ::-1]))  # a mirrored copy: the fingerprint does not see it
    blobs = [_jpeg(image) for image in images]
    vectors = np.stack(ImageEmbedder(str(model)).embed(blobs))
    prints = np.stack([fingerprint(b) for b in blobs])
    assert prints[6] @ prints[0] < 0.85
    threshold = float(vectors[6] @ vectors[0]) - 1e-4  # the mirrored copy's similarity to its original
    # The groups expected from both searches, computed here by brute force.
    pairs = [(i, j) for i in range(7) for j in range(i + 1, 7)
             if prints[i] @ prints[j] >= 0.85 or vectors[i] @ vectors[j] >= threshold]
    expected = connected_groups(7, np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    assert expected[6] == 0
    folder = tmp_path / "src"
    folder.mkdir()
    for i, data in enumerate(blobs):
        (folder / f"{i}.jpg").write_bytes(data)
    (folder / "t.csv").write_text("image,caption\n" + "".join(f"{i}.jpg,caption {i}\n" for i in range(7)))
    run_import(ImportConfig(format="table", source=str(folder / "t.csv"), output=str(tmp_path / "pairs")))

    def publish(name: str, **options) -> tuple[dict, dict]:
        out = run_publish(PublishConfig(dataset=[str(tmp_path / "pairs")], output=str(tmp_path / name), **options))
        rows = [r for split in load_dataset(str(out)).values() for r in split]
        return json.loads((out / "stats.json").read_text())["merge"], {r["caption"]: r["image_id"] for r in rows}

    merge, image_of = publish("plain")
    assert merge["near_duplicate_images"] == 0 and len(set(image_of.values())) == 7
    merge, image_of = publish("embedded", dedup_model=str(model), dedup_embedding_threshold=threshold)
    assert merge["near_duplicate_images"] == int((expected != np.arange(7)).sum())
    assert merge["embedding_duplicate_images"] == merge["near_duplicate_images"]
    for i in range(7):
        assert image_of[f"caption {i}"] == image_of[f"caption {expected[i]}"]
    assert len(set(image_of.values())) == len(set(expected.tolist()))
    assert "image embeddings of" in (tmp_path / "embedded" / "README.md").read_text()
