"""Typed schemas of the project's tables.

Four tables flow through the project (see ARCHITECTURE.md):

- ``VIDEO_FEATURES``: one row per source video (what was found and what probing measured);
- ``TRANSCRIPT_FEATURES``: one row per video with its timed ASR segments;
- ``CHUNK_FEATURES``: one row per static image cut from a video, with its time window and transcript window;
- ``PAIR_FEATURES``: the published table, one row per image-text pair. Column names follow the released
  Quilt tables where the meaning is the same (``video_id``, ``chunk_id``, ``caption``, ``noisy_text``,
  ``corrected_text``, ``medical_text``, ``roi_text``, ``med_umls_ids``, ``pathology``,
  ``magnification``, ``height``, ``width``, ``subset``, ``split``, ``video_duration``,
  ``pair_chunk_time``, ``fps``), with an ``Image`` feature for the image and provenance columns.

All times are seconds from the start of the video (float32). ``magnification`` follows Quilt:
0 is <=10x, 1 is 10-20x, 2 is >20x, and -1 means not stated.
"""

from __future__ import annotations

from datasets import Features, Image, List, Value

SCHEMA_VERSION = "1"

#: Quilt's sub-pathology labels (QUILT.md, stage 4).
PATHOLOGY_LABELS: tuple[str, ...] = (
    "Dermatopathology",
    "Gastrointestinal",
    "Pulmonary",
    "Gynecologic",
    "Soft tissue",
    "Breast",
    "Renal",
    "Hematopathology",
    "Genitourinary",
    "Bone",
    "Neuropathology",
    "Cardiac",
    "Hepatopathology",
    "Endocrine",
    "Head and Neck",
    "Cytopathology",
    "Ophthalmic",
    "Pediatric",
)

#: Quilt's magnification classes; -1 where the narration does not say.
MAGNIFICATION_UNKNOWN = -1
MAGNIFICATION_CLASSES: dict[int, str] = {0: "<=10x", 1: "10-20x", 2: ">20x"}

SEGMENT = {"start": Value("float32"), "end": Value("float32"), "text": Value("string")}

ENTITY = {
    "concept_id": Value("string"),
    "text": Value("string"),
    "char_start": Value("int32"),
    "char_end": Value("int32"),
    "confidence": Value("float32"),
}

TEXT_EDIT = {
    "original": Value("string"),
    "replacement": Value("string"),
    "char_start": Value("int32"),
    "char_end": Value("int32"),
    "confidence": Value("float32"),
}

VIDEO_FEATURES = Features(
    {
        "video_id": Value("string"),
        "source": Value("string"),  # local | manifest | youtube
        "path": Value("string"),  # local file the pipeline reads
        "url": Value("string"),  # original location, "" when unknown
        "title": Value("string"),
        "channel": Value("string"),
        "license": Value("string"),
        "sha256": Value("string"),  # content hash: the cache key of every later step
        "duration": Value("float32"),
        "fps": Value("float32"),
        "width": Value("int32"),
        "height": Value("int32"),
        "num_frames": Value("int64"),
        "has_audio": Value("bool"),
        "video_codec": Value("string"),
        "audio_codec": Value("string"),
        "drop_reason": Value("string"),  # "" when the video is usable
        "damaged_spans": List(List(Value("float32"))),  # [start, end] s of video that could not be decoded
    }
)

TRANSCRIPT_FEATURES = Features(
    {
        "video_id": Value("string"),
        "language": Value("string"),
        "text": Value("string"),
        "segments": List(SEGMENT),
        "asr_model": Value("string"),
        "asr_backend": Value("string"),
    }
)

CHUNK_FEATURES = Features(
    {
        "video_id": Value("string"),
        "chunk_id": Value("int32"),  # index of the histology chunk in the video
        "image_id": Value("string"),  # "<video_id>_<chunk_id>_<k>": unique per static image
        "image": Image(),
        "start": Value("float32"),  # the image's static interval
        "end": Value("float32"),
        "text_start": Value("float32"),  # the chunk's transcript window
        "text_end": Value("float32"),
        "noisy_text": Value("string"),  # raw ASR text of the window
        "histology_score": Value("float32"),
        "is_median": Value("bool"),  # temporal median of a stable interval (else a fallback key frame)
        "phash": Value("string"),
        "height": Value("int32"),
        "width": Value("int32"),
        "pair_chunk_time": Value("float32"),
        # "" when the chunk gives training pairs; else why not ("no_medical_text": the window's narration
        # holds no medical content, e.g. greetings, logistics or sign-offs only)
        "drop_reason": Value("string"),
    }
)

PAIR_FEATURES = Features(
    {
        "video_id": Value("string"),
        "chunk_id": Value("int32"),
        "image_id": Value("string"),
        "image": Image(),
        "image_path": Value("string"),  # file name of the image as published
        "caption": Value("string"),  # the text a model trains on: the medical text only (see DESIGN.md)
        "noisy_text": Value("string"),
        "corrected_text": Value("string"),
        "text_edits": List(TEXT_EDIT),
        "medical_text": Value("string"),
        "roi_text": Value("string"),
        "med_umls_ids": List(Value("string")),
        "entities": List(ENTITY),
        "pathology": List(Value("string")),
        "magnification": Value("int8"),
        "height": Value("int32"),
        "width": Value("int32"),
        "start": Value("float32"),
        "end": Value("float32"),
        "text_start": Value("float32"),
        "text_end": Value("float32"),
        "video_duration": Value("float32"),
        "pair_chunk_time": Value("float32"),
        "fps": Value("float32"),
        "subset": Value("string"),  # source of the pair: "quilt" for video-derived pairs
        "split": Value("string"),
        "source": Value("string"),
        "asr_model": Value("string"),
        "text_backend": Value("string"),
        "histology_model": Value("string"),
        "pipeline_version": Value("string"),
    }
)


def empty_row(features: Features) -> dict:
    """A row of defaults for ``features``: "" for strings, 0 for numbers, [] for lists, None for images."""
    row: dict = {}
    for name, feature in features.items():
        if isinstance(feature, List):
            row[name] = []
        elif isinstance(feature, Image):
            row[name] = None
        elif isinstance(feature, Value) and feature.dtype == "string":
            row[name] = ""
        elif isinstance(feature, Value) and feature.dtype == "bool":
            row[name] = False
        else:
            row[name] = 0
    return row
