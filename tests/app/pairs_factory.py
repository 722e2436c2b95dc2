"""A small pairs table with the project's schema for the app tests (imported by name: never import conftest)."""

from __future__ import annotations

from factories import histology_like_image, slide_like_image

CAPTIONS = [
    "Granulomas with multinucleated giant cells in the lung.",
    "Hematoxylin and eosin stain of colon adenocarcinoma with glands.",
    "Basal cell carcinoma with peripheral palisading in the dermis.",
    "Normal lymph node with reactive follicles.",
    "Renal clear cell carcinoma with delicate vasculature.",
    "Osteosarcoma producing osteoid between malignant cells.",
]
PATHOLOGY = [["Pulmonary"], ["Gastrointestinal"], ["Dermatopathology"], ["Hematopathology"], ["Renal"], ["Bone"]]


def build_pairs(n: int = 18):
    """A pairs table with the project's schema: 3 videos, 2 images per chunk, real (synthetic) pictures."""
    from datasets import Dataset
    from PIL import Image

    from quilt_hf.schema import PAIR_FEATURES, empty_row

    rows = []
    for i in range(n):
        video, chunk = f"vid{i % 3}", (i // 3) // 2
        k = i % 6
        picture = histology_like_image(i, (64, 64)) if i % 4 else slide_like_image(i, (64, 64))
        row = empty_row(PAIR_FEATURES)
        row.update(
            video_id=video,
            chunk_id=chunk,
            image_id=f"{video}_{chunk}_{i}",
            image=Image.fromarray(picture),
            caption=CAPTIONS[k],
            medical_text=CAPTIONS[k],
            roi_text="look at the centre" if k == 0 else "",
            corrected_text=CAPTIONS[k].lower(),
            noisy_text=CAPTIONS[k].lower().replace("eosin", "the ascending"),
            pathology=PATHOLOGY[k],
            magnification=[0, 1, 2, -1][i % 4],
            start=float(i),
            end=float(i) + 3,
            text_start=float(i) - 2,
            text_end=float(i) + 3,
            video_duration=60.0,
            subset="quilt",
            split="validation" if video == "vid2" else "train",
            height=64,
            width=64,
        )
        rows.append(row)
    return Dataset.from_list(rows, features=PAIR_FEATURES)
