"""Train the learned histology filter (``quilt_hf/data/histology_mlp.json``) on generated frames.

Inputs, and nothing else (``tests/curation/test_histology_learned.py`` checks that no held-out file is read):

- the demo corpus (the TUNING set): its videos, decoded at 0.5 fps and labelled by ``ground_truth.json``; its
  histology frames are also the tissue that the generators below re-stain, zoom out, and put under overlays;
- the natural photographs that ship inside the scikit-image wheel (``skimage/data/*.png``: astronaut, coffee,
  chelsea, rocket, motorcycle, ... and the ``lfw_subset`` faces), read from the wheel file, never installed::

      pip download --no-deps scikit-image==0.26.0 -d /tmp/skimage_wheel

- procedural material, all drawn here with a fixed seed:

  positives: demo tissue with random stain vectors (H&E, IHC-like haematoxylin + DAB, special-stain-like
  colour pairs) by colour deconvolution; synthetic tissue (fibrous stroma, nuclei, glands and holes); low
  power views (irregular tissue on white glass); cytology-like smears (scattered cells on a pale ground);
  any of them under slide-viewer chrome (toolbar, side panel, overview thumbnail, scale bar), a webcam
  picture-in-picture, arrows, circles and text labels;

  negatives: text slides (white, dark, pink and purple backgrounds), diagrams with flat pink/purple fills and
  drawn "cells", photographs (with colour casts, pink and purple included), presenter shots (demo presenter
  frames, faces on a drawn studio), desktop screens and empty viewers, gross-photograph-like specimens
  (smooth organ-coloured blobs with highlights, on drapes, with rulers);

  every frame may then be JPEG-compressed hard, blurred, letterboxed or pillarboxed (4:3 in 16:9 and back).

The model is a one-hidden-layer MLP (scikit-learn ``MLPClassifier``) on
:func:`quilt_hf.curation.histology_learned.frame_features`; the weights are written as JSON (a few KB) and run in
numpy. Usage::

    python dataset_scripts/train_histology_filter.py --skimage-wheel /tmp/skimage_wheel/scikit_image-0.26.0-*.whl

The generated set is split by generator family; the script prints accuracy per family on a validation split and
the precision/recall on the demo frames (tuning set: they are also training data, so that figure cannot be used
as evidence of generalisation; ``bench/bench_histology.py --corpus heldout`` gives the held-out figures).
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import logging
import sys
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quilt_hf.curation.histology_learned import DEFAULT_WEIGHTS, FEATURE_NAMES, MLPWeights, frame_features  # noqa: E402

logger = logging.getLogger("train_histology_filter")

HEIGHT, WIDTH = 288, 512  # generated frames; features are computed on a 128-px thumbnail anyway
PHOTOS = (
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "hubble_deep_field.jpg", "brick.png", "grass.png", "gravel.png", "retina.jpg", "color.png", "logo.png",
    "camera.png", "page.png", "text.png", "coins.png", "moon.png", "clock_motion.png",
)
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float32)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)
WORDS = (
    "pathology lecture case review diagnosis differential tumour grade margin biopsy resection stain section "
    "questions summary objectives outline references clinical history findings key points microscopy introduction "
    "epidemiology management prognosis treatment staging anatomy normal lesion features example quiz answer"
).split()


# -- small drawing helpers -------------------------------------------------------------------------------------
def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(8, int(size)))


def sentence(rng: np.random.Generator, low: int = 2, high: int = 7) -> str:
    return " ".join(rng.choice(WORDS, int(rng.integers(low, high)))).capitalize()


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (noise - noise.mean()) / (noise.std() + 1e-6)


def random_colour(rng: np.random.Generator, sat: tuple[float, float] = (0.2, 0.9), val: tuple[float, float] = (0.3, 1.0)):
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return int(r * 255), int(g * 255), int(b * 255)


def pinkish(rng: np.random.Generator):
    import colorsys

    hue = rng.choice([rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.03)])
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.15, 0.8), rng.uniform(0.45, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((max(1, width), max(1, height)), Image.Resampling.BILINEAR))


def random_crop(image: np.ndarray, rng: np.random.Generator, aspect: float, min_share: float = 0.3) -> np.ndarray:
    h, w = image.shape[:2]
    share = rng.uniform(min_share, 1.0)
    ch = int(min(h, w / aspect) * share)
    cw = int(ch * aspect)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return image[y : y + ch, x : x + cw]


# -- stain ---------------------------------------------------------------------------------------------------
def stain_vectors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """Two optical-density vectors (nuclear stain, counterstain) of a random stain family."""

    def jitter(vector, amount=0.12):
        v = np.clip(np.asarray(vector, np.float32) + rng.normal(0, amount, 3), 0.02, None)
        return v / np.linalg.norm(v)

    def od_of(rgb):
        v = -np.log(np.clip(np.asarray(rgb, np.float32) / 255.0, 0.02, 1.0))
        return v / (np.linalg.norm(v) + 1e-6)

    family = rng.choice(["he", "he", "ihc", "special"])
    if family == "he":
        return jitter(RGB_FROM_HED[0]), jitter(RGB_FROM_HED[1]), "he"
    if family == "ihc":  # haematoxylin counterstain, DAB (or red chromogen) for the marker
        marker = RGB_FROM_HED[2] if rng.random() < 0.75 else od_of((200, 40, 40))
        return jitter(marker, 0.08), jitter(RGB_FROM_HED[0]), "ihc"
    return od_of(random_colour(rng, (0.4, 1.0), (0.2, 0.8))), od_of(random_colour(rng, (0.2, 0.8), (0.4, 0.95))), "special"


def concentrations(tissue: np.ndarray) -> np.ndarray:
    od = -np.log(np.clip(tissue.astype(np.float32) / 255.0, 1 / 255.0, 1.0))
    return np.maximum(od.reshape(-1, 3) @ HED_FROM_RGB, 0).reshape(tissue.shape)


def render_stain(first: np.ndarray, second: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v1, v2, _ = stain_vectors(rng)
    od = first[..., None] * v1 * rng.uniform(0.5, 1.6) + second[..., None] * v2 * rng.uniform(0.5, 1.6)
    background = rng.uniform(0.0, 0.08, 3).astype(np.float32)  # slightly tinted glass
    return (np.exp(-(od + background)) * 255).clip(0, 255).astype(np.uint8)


def restain(tissue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hed = concentrations(tissue)
    first, second = hed[..., 0] * 1.4, hed[..., 1] * 1.2 + hed[..., 2]
    if rng.random() < 0.3:
        first, second = first + 0.3 * second, second
    return render_stain(first, second, rng)


def synthetic_tissue(rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Stroma of oriented fibres, nuclei (round, spindle, crowded in glands), empty lumens and fat."""
    sigma = (rng.uniform(0.8, 3), rng.uniform(3, 10)) if rng.random() < 0.5 else rng.uniform(1, 4)
    stroma = np.clip(0.55 + 0.25 * smooth_noise(rng, (height, width), sigma), 0.05, 1.2)
    stroma *= np.clip(0.8 + 0.3 * smooth_noise(rng, (height, width), 25), 0.3, 1.3)
    nuclei = np.zeros((height, width), np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    image = Image.new("L", (width, height))
    draw = ImageDraw.Draw(image)
    count = int(height * width / rng.uniform(150, 900))
    glands = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(15, 60)) for _ in range(int(rng.integers(0, 6)))]
    for _ in range(count):
        if glands and rng.random() < 0.5:
            gx, gy, gr = glands[int(rng.integers(len(glands)))]
            angle = rng.uniform(0, 2 * np.pi)
            cx, cy = gx + gr * np.cos(angle), gy + gr * np.sin(angle)
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(1.5, 5), rng.uniform(1.5, 5)
        if rng.random() < 0.3:
            rx *= 2.5
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=int(rng.uniform(120, 255)))
    nuclei = np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0))), np.float32) / 255.0 * 1.6
    holes = np.ones((height, width), np.float32)
    for gx, gy, gr in glands:
        holes[(xx - gx) ** 2 + (yy - gy) ** 2 < (gr * 0.7) ** 2] = 0.05
    for _ in range(int(rng.integers(0, 12))):  # fat cells / vessels
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(5, 25)
        holes[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = 0.02
    stroma = stroma * holes
    return render_stain(nuclei * holes + 0.05 * stroma, stroma * 0.6, rng)


def cytology(rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A smear: scattered and clustered cells (cytoplasm and nucleus) and red cells on a pale ground."""
    cyto = Image.new("L", (width, height))
    nucl = Image.new("L", (width, height))
    dc, dn = ImageDraw.Draw(cyto), ImageDraw.Draw(nucl)
    clusters = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(int(rng.integers(1, 6)))]
    scale = rng.uniform(0.6, 2.0)
    for _ in range(int(rng.integers(30, 260))):
        if rng.random() < 0.6:
            ox, oy = clusters[int(rng.integers(len(clusters)))]
            cx, cy = ox + rng.normal(0, 40), oy + rng.normal(0, 30)
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(4, 12) * scale
        dc.ellipse([cx - r, cy - r * rng.uniform(0.6, 1), cx + r, cy + r], fill=int(rng.uniform(60, 160)))
        rn = r * rng.uniform(0.25, 0.6)
        dn.ellipse([cx - rn, cy - rn, cx + rn, cy + rn * rng.uniform(0.7, 1.2)], fill=int(rng.uniform(150, 255)))
    for _ in range(int(rng.integers(0, 300))):  # red cells
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(2, 4) * scale
        dc.ellipse([cx - r, cy - r, cx + r, cy + r], fill=int(rng.uniform(80, 180)))
    texture = np.clip(1 + 0.3 * smooth_noise(rng, (height, width), 1.0), 0.4, 1.6)
    first = np.asarray(nucl.filter(ImageFilter.GaussianBlur(0.8)), np.float32) / 255.0 * 1.5 * texture
    second = np.asarray(cyto.filter(ImageFilter.GaussianBlur(1.0)), np.float32) / 255.0 * 0.7 * texture
    return render_stain(first, second, rng)


def low_power(tissue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tissue zoomed out to an irregular island (or a few) on white glass."""
    small = resize(tissue, int(WIDTH * rng.uniform(0.3, 0.8)), int(HEIGHT * rng.uniform(0.3, 0.8)))
    tiles = np.tile(small, (int(np.ceil(HEIGHT / small.shape[0])), int(np.ceil(WIDTH / small.shape[1])), 1))
    tiles = tiles[:HEIGHT, :WIDTH]
    level = rng.uniform(-0.2, 0.9)
    mask = smooth_noise(rng, (HEIGHT, WIDTH), rng.uniform(12, 40)) > level
    glass = np.full((HEIGHT, WIDTH, 3), rng.uniform(225, 255, 3), np.float32)
    glass += rng.normal(0, 2, glass.shape)
    out = np.where(mask[..., None], tiles.astype(np.float32), glass)
    return out.clip(0, 255).astype(np.uint8)


# -- overlays --------------------------------------------------------------------------------------------------
def draw_text_lines(draw: ImageDraw.ImageDraw, rng, box, colour, size_range=(10, 22), lines=None):
    x0, y0, x1, y1 = box
    y = y0
    for _ in range(lines or int(rng.integers(2, 9))):
        size = int(rng.uniform(*size_range))
        if y + size > y1:
            break
        draw.text((x0, y), ("• " if rng.random() < 0.5 else "") + sentence(rng), fill=colour, font=font(size))
        y += int(size * rng.uniform(1.3, 2.0))


def viewer_chrome(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A slide-viewer window around the frame: toolbar, side panel, overview thumbnail, scale bar."""
    canvas = Image.new("RGB", (WIDTH, HEIGHT), tuple(int(v) for v in rng.integers(20, 240, 3)))
    draw = ImageDraw.Draw(canvas)
    top = int(HEIGHT * rng.uniform(0.04, 0.12))
    left = int(WIDTH * rng.uniform(0.12, 0.25)) if rng.random() < 0.5 else 0
    view = Image.fromarray(resize(image, WIDTH - left, HEIGHT - top))
    canvas.paste(view, (left, top))
    bar = tuple(int(v) for v in rng.integers(30, 230, 3))
    draw.rectangle([0, 0, WIDTH, top], fill=bar)
    for k in range(int(rng.integers(3, 12))):  # icons
        x = 6 + k * (top + 4)
        draw.rectangle([x, 3, x + top - 6, top - 3], fill=random_colour(rng), outline=(0, 0, 0))
    if rng.random() < 0.7:
        draw.text((WIDTH // 2, 2), sentence(rng, 1, 4), fill=(0, 0, 0) if sum(bar) > 380 else (255, 255, 255), font=font(top * 0.6))
    if left:
        panel = tuple(int(v) for v in rng.integers(30, 250, 3))
        draw.rectangle([0, top, left, HEIGHT], fill=panel)
        draw_text_lines(draw, rng, (4, top + 6, left - 4, HEIGHT), (0, 0, 0) if sum(panel) > 380 else (230, 230, 230), (8, 12), 12)
    if rng.random() < 0.7:  # overview thumbnail
        tw = int(WIDTH * rng.uniform(0.12, 0.22))
        th = int(tw * rng.uniform(0.6, 1.2))
        thumb = Image.fromarray(resize(image, tw, th))
        x, y = (WIDTH - tw - 6, top + 6) if rng.random() < 0.5 else (left + 6, HEIGHT - th - 6)
        draw.rectangle([x - 2, y - 2, x + tw + 2, y + th + 2], fill=(255, 255, 255))
        canvas.paste(thumb, (x, y))
        draw.rectangle([x + tw // 3, y + th // 3, x + tw // 2, y + th // 2], outline=(255, 0, 0) if rng.random() < 0.5 else (0, 255, 0))
    if rng.random() < 0.8:  # scale bar
        x, y = WIDTH - int(WIDTH * 0.2), HEIGHT - 16
        draw.rectangle([x, y, x + int(WIDTH * 0.1), y + 4], fill=(0, 0, 0) if rng.random() < 0.6 else (255, 255, 255))
        draw.text((x, y - 14), f"{int(rng.choice([50, 100, 200, 500]))} um", fill=(0, 0, 0), font=font(11))
    return np.asarray(canvas)


def picture_in_picture(image: np.ndarray, inset: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    canvas = Image.fromarray(image)
    share = rng.uniform(0.15, 0.33)
    w = int(WIDTH * share)
    h = int(w * rng.uniform(0.56, 1.0))
    x = int(rng.choice([6, WIDTH - w - 6]))
    y = int(rng.choice([6, HEIGHT - h - 6]))
    ImageDraw.Draw(canvas).rectangle([x - 2, y - 2, x + w + 2, y + h + 2], fill=random_colour(rng))
    canvas.paste(Image.fromarray(resize(inset, w, h)), (x, y))
    return np.asarray(canvas)


def annotate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Arrows, circles and short labels drawn over the frame, as lecturers do."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 6))):
        colour = random_colour(rng, (0.7, 1.0), (0.7, 1.0)) if rng.random() < 0.8 else (0, 0, 0)
        x0, y0 = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
        x1, y1 = x0 + rng.normal(0, 60), y0 + rng.normal(0, 40)
        kind = rng.random()
        if kind < 0.4:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(2, 6)))
            angle = np.arctan2(y1 - y0, x1 - x0)
            for side in (-0.5, 0.5):
                draw.line([x1, y1, x1 - 12 * np.cos(angle + side), y1 - 12 * np.sin(angle + side)], fill=colour, width=3)
        elif kind < 0.7:
            r = rng.uniform(10, 50)
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], outline=colour, width=int(rng.integers(2, 5)))
        else:
            label = sentence(rng, 1, 3)
            size = int(rng.uniform(12, 26))
            if rng.random() < 0.5:
                draw.rectangle([x0 - 3, y0 - 3, x0 + size * len(label) * 0.55, y0 + size + 3], fill=(255, 255, 255))
            draw.text((x0, y0), label, fill=colour, font=font(size))
    return np.asarray(canvas)


# -- negatives -----------------------------------------------------------------------------------------------
def background(rng: np.random.Generator, pink: bool = False) -> Image.Image:
    if pink or rng.random() < 0.25:
        top, bottom = pinkish(rng), pinkish(rng)
    elif rng.random() < 0.5:
        top = bottom = tuple(int(v) for v in rng.integers(235, 256, 3))
    else:
        top, bottom = random_colour(rng, (0.0, 0.8), (0.1, 1.0)), random_colour(rng, (0.0, 0.8), (0.1, 1.0))
    t = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None, None]
    grad = (np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t) * np.ones((1, WIDTH, 1), np.float32)
    return Image.fromarray(grad.astype(np.uint8))


def text_slide(rng: np.random.Generator, photos: list[np.ndarray], pink: bool = False) -> np.ndarray:
    canvas = background(rng, pink)
    draw = ImageDraw.Draw(canvas)
    dark = np.asarray(canvas).mean() < 128
    ink = (240, 240, 240) if dark else tuple(int(v) for v in rng.integers(0, 90, 3))
    title = int(rng.uniform(18, 40))
    draw.text((int(rng.uniform(10, 60)), int(rng.uniform(8, 40))), sentence(rng, 2, 5), fill=ink, font=font(title))
    if rng.random() < 0.4:
        draw.rectangle([0, HEIGHT - 20, WIDTH, HEIGHT], fill=pinkish(rng) if pink else random_colour(rng))
    right = WIDTH - 10
    if photos and rng.random() < 0.25:  # a photograph (never tissue) beside the text
        photo = photos[int(rng.integers(len(photos)))]
        w = int(WIDTH * rng.uniform(0.25, 0.45))
        h = int(w * rng.uniform(0.6, 1.0))
        canvas.paste(Image.fromarray(resize(random_crop(photo, rng, w / h), w, h)), (WIDTH - w - 10, int(HEIGHT * 0.3)))
        right = WIDTH - w - 20
    draw_text_lines(draw, rng, (int(rng.uniform(15, 60)), title + 50, right, HEIGHT - 10), ink)
    return np.asarray(canvas)


def diagram(rng: np.random.Generator) -> np.ndarray:
    """Flat-filled shapes, drawn cells with nuclei, arrows and labels, often in pink and purple."""
    canvas = background(rng) if rng.random() < 0.4 else Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 25))):
        x, y = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
        w, h = rng.uniform(10, 150), rng.uniform(10, 120)
        fill = pinkish(rng) if rng.random() < 0.6 else random_colour(rng)
        outline = tuple(int(v) for v in rng.integers(0, 120, 3))
        shape = rng.random()
        if shape < 0.45:
            draw.ellipse([x, y, x + w, y + h], fill=fill, outline=outline, width=int(rng.integers(1, 4)))
            if rng.random() < 0.6:  # a nucleus
                draw.ellipse([x + w * 0.35, y + h * 0.35, x + w * 0.6, y + h * 0.6], fill=(int(rng.integers(60, 140)), 40, int(rng.integers(100, 180))))
        elif shape < 0.75:
            draw.rounded_rectangle([x, y, x + w, y + h], radius=int(rng.integers(0, 15)), fill=fill, outline=outline)
        else:
            points = [(x + rng.uniform(-60, 60), y + rng.uniform(-60, 60)) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(points, fill=fill, outline=outline)
        if rng.random() < 0.4:
            draw.line([x, y, x + rng.normal(0, 80), y + rng.normal(0, 80)], fill=outline, width=2)
        if rng.random() < 0.4:
            draw.text((x, y + h + 2), sentence(rng, 1, 3), fill=(0, 0, 0), font=font(rng.uniform(10, 18)))
    if rng.random() < 0.6:
        draw.text((10, 8), sentence(rng, 2, 5), fill=(0, 0, 0), font=font(rng.uniform(16, 32)))
    return np.asarray(canvas)


def photograph(photos: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    photo = resize(random_crop(photos[int(rng.integers(len(photos)))], rng, WIDTH / HEIGHT), WIDTH, HEIGHT).astype(np.float32)
    if rng.random() < 0.5:  # colour cast, pink and purple included
        cast = np.asarray(pinkish(rng) if rng.random() < 0.5 else random_colour(rng), np.float32) / 255.0
        photo = photo * (0.5 + 0.5 * cast) + 40 * cast
    return photo.clip(0, 255).astype(np.uint8)


def presenter(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A person in front of a wall: a face (lfw) on a drawn body, in a room of smooth colours."""
    canvas = background(rng)
    draw = ImageDraw.Draw(canvas)
    if rng.random() < 0.5:  # shelves, a window, a poster
        for _ in range(int(rng.integers(1, 5))):
            x, y = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
            draw.rectangle([x, y, x + rng.uniform(30, 150), y + rng.uniform(20, 120)], fill=random_colour(rng, (0, 0.6)))
    cx = WIDTH * rng.uniform(0.3, 0.7)
    scale = rng.uniform(0.6, 1.4)
    draw.ellipse([cx - 110 * scale, HEIGHT * 0.55, cx + 110 * scale, HEIGHT * 1.4], fill=random_colour(rng, (0, 0.7), (0.1, 0.9)))
    face = faces[int(rng.integers(len(faces)))]
    skin = np.asarray([rng.uniform(0.6, 1.0), rng.uniform(0.45, 0.8), rng.uniform(0.35, 0.7)], np.float32)
    face_rgb = (np.repeat(face[..., None], 3, -1) * skin * 255).clip(0, 255).astype(np.uint8)
    size = int(110 * scale)
    canvas.paste(Image.fromarray(resize(face_rgb, size, int(size * 1.15))), (int(cx - size / 2), int(HEIGHT * 0.55 - size)))
    return np.asarray(canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2))))


def screen(rng: np.random.Generator, photos: list[np.ndarray]) -> np.ndarray:
    """A desktop: wallpaper, windows with title bars and text, a task bar; sometimes an empty slide viewer."""
    if photos and rng.random() < 0.3:
        canvas = Image.fromarray(photograph(photos, rng))
    else:
        canvas = background(rng)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 4))):
        x, y = rng.uniform(0, WIDTH * 0.6), rng.uniform(0, HEIGHT * 0.5)
        w, h = rng.uniform(120, WIDTH - x), rng.uniform(80, HEIGHT - y)
        body = tuple(int(v) for v in rng.integers(180, 256, 3)) if rng.random() < 0.7 else (int(rng.integers(60, 140)),) * 3
        draw.rectangle([x, y, x + w, y + h], fill=body, outline=(80, 80, 80))
        draw.rectangle([x, y, x + w, y + 16], fill=random_colour(rng, (0, 0.6)))
        draw.text((x + 4, y + 2), sentence(rng, 1, 3), fill=(0, 0, 0), font=font(11))
        if rng.random() < 0.7:
            draw_text_lines(draw, rng, (x + 6, y + 22, x + w, y + h), (20, 20, 20), (8, 12))
    draw.rectangle([0, HEIGHT - 18, WIDTH, HEIGHT], fill=random_colour(rng, (0, 0.5), (0.1, 0.5)))
    return np.asarray(canvas)


def gross_specimen(rng: np.random.Generator) -> np.ndarray:
    """A photograph-like organ: a smooth blob of red, brown, tan or pink with shading and highlights, on a drape."""
    drape = np.asarray(rng.choice([[40, 80, 140], [50, 120, 90], [235, 235, 235], [20, 20, 20], [90, 140, 200]]), np.float32)
    canvas = drape * (1 + 0.08 * smooth_noise(rng, (HEIGHT, WIDTH), 6)[..., None])
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    cx, cy = WIDTH * rng.uniform(0.3, 0.7), HEIGHT * rng.uniform(0.3, 0.7)
    rx, ry = WIDTH * rng.uniform(0.15, 0.4), HEIGHT * rng.uniform(0.2, 0.45)
    radius = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    mask = radius + 0.3 * smooth_noise(rng, (HEIGHT, WIDTH), 20) < 1
    base = np.asarray(rng.choice([[150, 40, 45], [120, 60, 40], [200, 160, 120], [210, 120, 130], [170, 80, 110], [90, 30, 40]]), np.float32)
    texture = 1 + rng.uniform(0.05, 0.25) * smooth_noise(rng, (HEIGHT, WIDTH), rng.uniform(2, 8))
    shade = np.clip(1.15 - 0.45 * radius, 0.4, 1.2)
    organ = base * (texture * shade)[..., None]
    for _ in range(int(rng.integers(0, 15))):  # specular highlights
        hx, hy, hr = rng.uniform(cx - rx, cx + rx), rng.uniform(cy - ry, cy + ry), rng.uniform(2, 10)
        organ[(xx - hx) ** 2 + (yy - hy) ** 2 < hr * hr] = 245
    canvas = np.where(mask[..., None], organ, canvas).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(canvas)
    if rng.random() < 0.6:  # a ruler
        draw = ImageDraw.Draw(image)
        y = int(HEIGHT * rng.uniform(0.8, 0.92))
        draw.rectangle([20, y, WIDTH - 20, y + 18], fill=(240, 230, 180) if rng.random() < 0.5 else (250, 250, 250))
        for k, x in enumerate(range(24, WIDTH - 24, 8)):
            draw.line([x, y, x, y + (10 if k % 5 == 0 else 5)], fill=(0, 0, 0))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.0))))


# -- degradations ----------------------------------------------------------------------------------------------
def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if image.shape[:2] != (HEIGHT, WIDTH):
        image = resize(image, WIDTH, HEIGHT)
    if rng.random() < 0.2:  # letterbox or pillarbox
        canvas = np.zeros_like(image)
        if rng.random() < 0.5:
            w = int(HEIGHT * 4 / 3)
            canvas[:, (WIDTH - w) // 2 : (WIDTH - w) // 2 + w] = resize(image, w, HEIGHT)
        else:
            h = int(WIDTH * 9 / 21)
            canvas[(HEIGHT - h) // 2 : (HEIGHT - h) // 2 + h] = resize(image, WIDTH, h)
        image = canvas
    if rng.random() < 0.15:
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5))))
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(rng.integers(8, 90)))
        image = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return image


# -- inputs ----------------------------------------------------------------------------------------------------
def demo_frames(corpus: Path, fps: float, margin: float = 0.7) -> list[tuple[np.ndarray, bool, str, str]]:
    """``(frame, is_histology, kind, video_id)`` for frames of the demo videos, away from interval boundaries."""
    from quilt_hf.curation.frames import iter_frame_batches

    truth = json.loads((corpus / "ground_truth.json").read_text())["videos"]
    frames = []
    for video in truth:
        for times, batch in iter_frame_batches(corpus / video["file"], sample_fps=fps):
            for time_, frame in zip(times, batch):
                for interval in video["intervals"]:
                    if interval["start"] + margin <= time_ < interval["end"] - margin:
                        small = resize(np.asarray(frame), WIDTH, HEIGHT)
                        frames.append((small, bool(interval["histology"]), interval["kind"], video["video_id"]))
                        break
    return frames


def wheel_images(wheel: Path) -> tuple[list[np.ndarray], np.ndarray]:
    with zipfile.ZipFile(wheel) as archive:
        photos = [
            np.asarray(Image.open(io.BytesIO(archive.read(f"skimage/data/{name}"))).convert("RGB")) for name in PHOTOS
        ]
        faces = np.load(io.BytesIO(archive.read("skimage/data/lfw_subset.npy")))
    return photos, faces.astype(np.float32) / max(1.0, float(faces.max()))


def generate(corpus: Path, wheel: Path, per_family: int, seed: int):
    """Yield ``(image, label, family)``: every generated training frame."""
    rng = np.random.default_rng(seed)
    demo = demo_frames(corpus, fps=0.5)
    tissue = [f for f, label, kind, _ in demo if label]
    people = [f for f, label, kind, _ in demo if kind == "presenter"]
    photos, faces = wheel_images(wheel)
    logger.info("demo: %d frames (%d histology); %d photographs, %d faces", len(demo), len(tissue), len(photos), len(faces))
    if not tissue:
        raise SystemExit(f"{corpus}: no histology frames found (the generators re-stain them)")
    for frame, label, kind, _ in demo:
        yield degrade(frame, rng), label, f"demo_{kind}"

    def any_tissue():
        kind = rng.random()
        if kind < 0.35:
            return restain(resize(random_crop(tissue[int(rng.integers(len(tissue)))], rng, WIDTH / HEIGHT), WIDTH, HEIGHT), rng)
        if kind < 0.65:
            return synthetic_tissue(rng)
        if kind < 0.85:
            return cytology(rng)
        return low_power(synthetic_tissue(rng) if rng.random() < 0.5 else restain(tissue[int(rng.integers(len(tissue)))], rng), rng)

    def inset():
        return people[int(rng.integers(len(people)))] if people and rng.random() < 0.5 else presenter(faces, rng)

    positives = {
        "restained": lambda: restain(resize(random_crop(tissue[int(rng.integers(len(tissue)))], rng, WIDTH / HEIGHT), WIDTH, HEIGHT), rng),
        "synthetic_tissue": lambda: synthetic_tissue(rng),
        "cytology": lambda: cytology(rng),
        "low_power": lambda: low_power(any_tissue(), rng),
        "viewer_chrome": lambda: viewer_chrome(any_tissue(), rng),
        "webcam_pip": lambda: picture_in_picture(any_tissue(), inset(), rng),
        "annotated": lambda: annotate(any_tissue(), rng),
    }
    negatives = {
        "text_slide": lambda: text_slide(rng, photos),
        "pink_slide": lambda: text_slide(rng, photos, pink=True),
        "diagram": lambda: diagram(rng),
        "photograph": lambda: photograph(photos, rng),
        "presenter": lambda: presenter(faces, rng),
        "presenter_demo": lambda: degrade(np.ascontiguousarray(random_crop(people[int(rng.integers(len(people)))], rng, WIDTH / HEIGHT, 0.6)[:, :: int(rng.choice([1, -1]))]), rng),
        "screen": lambda: screen(rng, photos),
        "gross": lambda: gross_specimen(rng),
        "slide_with_pip": lambda: picture_in_picture(text_slide(rng, photos), inset(), rng),
        "annotated_photo": lambda: annotate(photograph(photos, rng), rng),
    }
    if not people:
        del negatives["presenter_demo"]
    for families, label in ((positives, True), (negatives, False)):
        for family, make in families.items():
            for _ in range(per_family):
                yield degrade(make(), rng), label, family


def train(features: np.ndarray, labels: np.ndarray, seed: int, hidden: int):
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    model = MLPClassifier((hidden,), alpha=1e-3, max_iter=2000, random_state=seed, early_stopping=False)
    model.fit(scaler.transform(features), labels)
    layers = [(w.astype(np.float32), b.astype(np.float32)) for w, b in zip(model.coefs_, model.intercepts_)]
    return MLPWeights(scaler.mean_.astype(np.float32), np.maximum(scaler.scale_, 1e-6).astype(np.float32), layers, FEATURE_NAMES, {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-corpus", type=Path, default=ROOT / "demo_corpus", help="The demo corpus (tuning set).")
    parser.add_argument(
        "--skimage-wheel", type=Path, default=None,
        help="The scikit-image 0.26.0 wheel (photographs and faces are read from it): "
        "`pip download --no-deps scikit-image==0.26.0 -d /tmp/skimage_wheel`.",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_WEIGHTS, help="Where to write the weights JSON.")
    parser.add_argument("--per-family", type=int, default=200, help="Generated frames per generator family.")
    parser.add_argument("--hidden", type=int, default=32, help="Hidden units of the MLP.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-examples", type=Path, default=None, help="Write a few PNGs per family here (to look at).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    wheel = args.skimage_wheel
    if wheel is None:
        found = sorted(glob.glob("/tmp/skimage_wheel/scikit_image-0.26.0-*.whl"))
        wheel = Path(found[0]) if found else None
    if wheel is None or not wheel.is_file():
        parser.error("scikit-image wheel not found: `pip download --no-deps scikit-image==0.26.0 -d /tmp/skimage_wheel`")

    started = time.perf_counter()
    rows, labels, families = [], [], []
    saved: Counter = Counter()
    for image, label, family in generate(args.demo_corpus, wheel, args.per_family, args.seed):
        rows.append(frame_features(image))
        labels.append(label)
        families.append(family)
        if args.save_examples is not None and saved[family] < 4:
            args.save_examples.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(args.save_examples / f"{family}_{saved[family]}.png")
            saved[family] += 1
    features, labels_ = np.stack(rows), np.asarray(labels)
    logger.info("%d frames generated and measured in %.0f s", len(labels_), time.perf_counter() - started)

    # validation: every 5th frame of each family held back, accuracy per family
    index = defaultdict(list)
    for i, family in enumerate(families):
        index[family].append(i)
    valid = np.zeros(len(labels_), bool)
    for members in index.values():
        valid[members[::5]] = True
    check = train(features[~valid], labels_[~valid], args.seed, args.hidden)
    predictions = check(features[valid]) >= 0.5
    logger.info("validation accuracy per family (generated, 1 in 5 held back):")
    for family, members in index.items():
        held = [i for i in members[::5]]
        correct = (predictions[np.searchsorted(np.flatnonzero(valid), held)] == labels_[held]).mean()
        logger.info("  %-18s %s %.3f (%d)", family, "+" if labels_[held[0]] else "-", correct, len(held))

    weights = train(features, labels_, args.seed, args.hidden)
    weights.meta = {
        "trained_by": "dataset_scripts/train_histology_filter.py",
        "seed": args.seed,
        "per_family": args.per_family,
        "frames": int(len(labels_)),
        "families": dict(Counter(families)),
        "inputs": ["demo_corpus (tuning set)", f"scikit-image wheel {wheel.name}: {', '.join(PHOTOS)}, lfw_subset.npy"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    weights.to_json(args.output)
    logger.info("wrote %s (%d bytes)", args.output, args.output.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
