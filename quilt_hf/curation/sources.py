"""Sources: the videos table (``VIDEO_FEATURES``) from a folder, a manifest, or YouTube.

Whatever the source, the result is the same table: one row per video with ``path`` (the local file the
pipeline reads), provenance (``source``, ``url``, ``title``, ``channel``, ``license``) and ``sha256``, the
content hash every later step uses as its cache key. Probe columns (duration, fps, ...) are left at their
defaults; :mod:`quilt_hf.curation.probe` fills them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from quilt_hf.errors import UserFacingError, require
from quilt_hf.schema import VIDEO_FEATURES, empty_row

logger = logging.getLogger(__name__)

#: Extensions of the files a folder source expects to be videos (their id is the file's stem). Every other
#: file in the folder is listed too (id: its whole name) and probed, so an audio-only lecture (``audio_only``)
#: or a file that is no media (``unreadable``) is recorded with its reason instead of silently skipped.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv")


def file_sha256(path: str | Path, block_size: int = 1 << 20) -> str:
    """The SHA-256 of a file, read in blocks (flat memory); "" when the file cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(block_size):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


def safe_video_id(name: str) -> str:
    """A file-system and URL safe id from a file stem or a title."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "video"


def _video_row(path: Path | str, *, source: str, video_id: str | None = None, **metadata) -> dict:
    row = empty_row(VIDEO_FEATURES)
    path = Path(path)
    row.update(
        video_id=safe_video_id(video_id or path.stem),
        source=source,
        path=str(path.resolve()) if path.exists() else str(path),
        sha256=file_sha256(path) if path.is_file() else "",
    )
    for key, value in metadata.items():
        if key in row and key not in ("video_id", "source", "path", "sha256") and value is not None:
            row[key] = type(row[key])(value) if not isinstance(row[key], bool) else bool(value)
    if not path.is_file():
        row["drop_reason"] = "missing_file"
    return row


def _unique_ids(rows: list[dict]) -> list[dict]:
    seen: dict[str, int] = {}
    for row in rows:
        base = row["video_id"]
        if base in seen:
            seen[base] += 1
            row["video_id"] = f"{base}-{seen[base]}"
        else:
            seen[base] = 0
    return rows


def videos_from_folder(folder: str | Path, recursive: bool = True) -> list[dict]:
    """Rows of the videos table for every file under ``folder`` (videos first, each group sorted by path).

    Every file is listed, whatever it holds: probing gives the unusable ones a drop reason (``audio_only``,
    ``unreadable``, ``empty_file``...), so each file not taken is recorded in the videos table and in
    ``stats.json`` instead of silently skipped. Files with a video extension get their stem as id; other
    files their whole name (a ``lecture.m4a`` next to ``lecture.mp4`` never takes the video's id).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserFacingError(f"--videos {folder}: not a folder or manifest file")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    videos = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]
    others = [p for p in files if p.suffix.lower() not in VIDEO_EXTENSIONS]
    if not videos:
        logger.warning("no video files (%s) under %s", ", ".join(VIDEO_EXTENSIONS), folder)
    if others:
        logger.info("%d files without a video extension under %s: probed and recorded", len(others), folder)
    rows = [_video_row(p, source="local", title=p.stem) for p in videos]
    rows += [_video_row(p, source="local", video_id=p.name, title=p.stem) for p in others]
    return _unique_ids(rows)


def _read_manifest(path: Path) -> list[dict]:
    if path.suffix.lower() in (".jsonl", ".json"):
        records = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise UserFacingError(f"{path}:{number}: not valid JSON ({error})") from error
        return records
    if path.suffix.lower() in (".csv", ".tsv"):
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    raise UserFacingError(f"manifest {path}: expected a .csv, .tsv or .jsonl file")


def videos_from_manifest(manifest: str | Path, download_dir: str | Path | None = None) -> list[dict]:
    """Rows of the videos table from a CSV/JSONL manifest.

    Each record has ``path`` (relative paths are read from the manifest's folder) or ``url`` (downloaded
    with yt-dlp into ``download_dir``, the optional ``youtube`` extra), plus optional ``video_id``,
    ``title``, ``channel``, ``license``.
    """
    manifest = Path(manifest)
    rows = []
    for number, record in enumerate(_read_manifest(manifest), 1):
        record = {k: v for k, v in record.items() if v not in (None, "")}
        metadata = {k: record.get(k) for k in ("title", "channel", "license", "url")}
        if record.get("path"):
            path = Path(record["path"]).expanduser()
            path = path if path.is_absolute() else manifest.parent / path
            rows.append(_video_row(path, source="manifest", video_id=record.get("video_id"), **metadata))
        elif record.get("url"):
            target = Path(download_dir or manifest.parent / "downloads")
            downloaded = download_youtube([record["url"]], target)
            for row in downloaded:
                row["source"] = "manifest"
                for key in ("title", "channel", "license"):
                    if record.get(key):
                        row[key] = record[key]
                if record.get("video_id"):
                    row["video_id"] = safe_video_id(record["video_id"])
            rows.extend(downloaded)
        else:
            raise UserFacingError(f"{manifest} record {number}: needs a 'path' or a 'url'")
    return _unique_ids(rows)


def download_youtube(
    items: Sequence[str], output_dir: str | Path, max_results_per_query: int = 10, subtitles: bool = True
) -> list[dict]:
    """Download videos (with audio, subtitles when present, metadata) with yt-dlp.

    Args:
        items (`Sequence[str]`): YouTube ids, URLs, or search queries (``ytsearch:`` is added to
            anything that is neither an id nor a URL).
        output_dir (`str` or `Path`): where the files (``<id>.mp4``, ``<id>.*.vtt``, ``<id>.info.json``) go.
        max_results_per_query (`int`): results taken per search query.
        subtitles (`bool`): also fetch subtitles (manual and automatic, English).

    Returns:
        `list[dict]`: rows of the videos table with ``source="youtube"``.
    """
    yt_dlp = require("yt_dlp", package="yt-dlp", extra="youtube", purpose="downloading videos from YouTube")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "format": "bv*[height<=720][ext=mp4]+ba[ext=m4a]/b[height<=720]/b",
        "merge_output_format": "mp4",
        "outtmpl": str(output_dir / "%(id)s.%(ext)s"),
        "writeinfojson": True,
        "writesubtitles": subtitles,
        "writeautomaticsub": subtitles,
        "subtitleslangs": ["en"],
        "quiet": True,
        "noprogress": True,
        "ignoreerrors": True,
    }
    rows = []
    with yt_dlp.YoutubeDL(options) as downloader:
        for item in items:
            query = item
            if not re.match(r"^https?://", item) and not re.fullmatch(r"[A-Za-z0-9_-]{11}", item):
                query = f"ytsearch{max_results_per_query}:{item}"
            info = downloader.extract_info(query, download=True)
            if info is None:
                logger.warning("yt-dlp found nothing for %r", item)
                continue
            for entry in info.get("entries") or [info]:
                if not entry:
                    continue
                path = output_dir / f"{entry['id']}.mp4"
                rows.append(
                    _video_row(
                        path,
                        source="youtube",
                        video_id=entry["id"],
                        url=entry.get("webpage_url") or entry.get("original_url") or "",
                        title=entry.get("title") or "",
                        channel=entry.get("channel") or entry.get("uploader") or "",
                        license=entry.get("license") or "",
                    )
                )
    return rows


def load_videos(spec: str | Path | Iterable[str], download_dir: str | Path | None = None):
    """The videos table as a ``datasets.Dataset`` with ``VIDEO_FEATURES``.

    Args:
        spec: a folder of videos, a manifest (``.csv``/``.tsv``/``.jsonl``), or a list of YouTube ids,
            URLs or search queries (these need the ``youtube`` extra and a network).
        download_dir: where downloads go (YouTube and manifest URLs).
    """
    from datasets import Dataset

    if isinstance(spec, (str, Path)):
        path = Path(spec).expanduser()
        if path.is_dir():
            rows = videos_from_folder(path)
        elif path.is_file():
            rows = videos_from_manifest(path, download_dir)
        elif str(spec).startswith(("http://", "https://", "ytsearch")):
            rows = download_youtube([str(spec)], download_dir or "downloads")
        else:
            raise UserFacingError(f"--videos {spec}: no such folder or manifest file")
    else:
        rows = download_youtube(list(spec), download_dir or "downloads")
    rows.sort(key=lambda row: row["video_id"])
    return Dataset.from_list(rows, features=VIDEO_FEATURES)
