"""Small files in the Quilt-1M release's exact formats (column names, Python-literal list cells, zip parts)."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
from factories import histology_like_image
from PIL import Image

LOOKUP_HEADER = ["", "caption", "image_path", "subset", "split", "pathology", "roi_text", "noisy_text",
                 "corrected_text", "med_umls_ids", "magnification", "height", "width", "single_wsi", "not_histology"]

VIDEO_IMAGE = "dQw4w9WgXcQ_image_0b9f6a2e-5c1d-4d8e-9f00-aa11bb22cc33.jpg"
ROWS = [
    # Two rows share the video image (the release pairs many-to-many); one caption spans two lines.
    ["0", "Here we see a basal cell carcinoma,\nwith palisading nuclei.", VIDEO_IMAGE, "quilt", "train",
     "['Dermatopathology']", "['palisading at the edge', 'nests']", "here we see a basil cell carcinoma",
     "here we see a basal cell carcinoma", "['C0007117', 'C0027882']", "2", "720", "1280", "False", "False"],
    ["1", "Another sentence about the same field.", VIDEO_IMAGE, "quilt", "train", "['Dermatopathology', 'Head and Neck']",
     "", "another sentence", "another sentence", "[]", "1", "720", "1280", "False", "False"],
    ["2", "Ductal carcinoma in situ, PMC figure.", "PMC1234567_fig2.jpg", "pubmed", "val", "['Breast']",
     "", "", "", "[\"C0007124\"]", "", "", "", "", ""],
    ["3", "A tweet about a renal biopsy it's crescentic", "openpath_99.png", "openpath", "test", "['Renal']",
     "", "", "", "[]", "", "", "", "", ""],
    ["4", "This row's image is missing from every zip part.", "laion_missing.jpg", "laion", "train", "[]",
     "", "", "", "[]", "", "", "", "", ""],
]
ORPHAN = "laion_orphan.jpg"


def _encode(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


def make_release(folder: Path) -> dict:
    """Write ``quilt_1M_lookup.csv`` and two variants of zip parts (full size, 512 px) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lookup = folder / "quilt_1M_lookup.csv"
    with lookup.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(LOOKUP_HEADER)
        writer.writerows(ROWS)
    names = [VIDEO_IMAGE, "PMC1234567_fig2.jpg", "openpath_99.png", ORPHAN]
    images = {name: histology_like_image(seed, (96, 128)) for seed, name in enumerate(names)}
    parts = {"full": [], "512": []}
    for variant, scale in (("full", 1), ("512", 2)):
        for part, chunk in enumerate((names[:2], names[2:])):
            path = folder / f"quilt_1m_{variant}_part{part}.zip"
            with zipfile.ZipFile(path, "w") as archive:
                for name in chunk:
                    image = images[name][::scale, ::scale]
                    archive.writestr(f"images/{name}", _encode(image, "PNG" if name.endswith(".png") else "JPEG"))
            parts[variant].append(path)
    return {"lookup": lookup, "parts": parts, "images": images}
