"""Probe: what a video file holds (duration, fps, size, audio, codecs), and why it cannot be used.

Probing reads container headers with PyAV (no decoding beyond a first frame check), so it is safe to run
in the main process; anything PyAV cannot open becomes a drop reason, never an exception.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

PROBE_VERSION = "2"

#: Extensions of audio files: probed like videos (an audio-only lecture is recorded as ``audio_only``).
AUDIO_EXTENSIONS = (".m4a", ".mp3", ".wav", ".aac", ".flac", ".ogg", ".opus", ".wma", ".weba")

#: Drop reasons probing can give (the pipeline adds its own for later steps).
DROP_REASONS = {
    "missing_file": "the file does not exist",
    "empty_file": "the file has zero bytes",
    "unreadable": "not a media container FFmpeg can open (corrupt, or not a video)",
    "not_media": "a file without a media extension that FFmpeg cannot open (notes, metadata, subtitles)",
    "audio_only": "an audio-only file (whatever its extension): no video stream",
    "no_media_streams": "a container with neither a video nor an audio stream (subtitles, data)",
    "no_audio": "no audio stream: nothing to transcribe",
    "zero_length": "the video has no frames or no duration",
    "undecodable": "the first video frame cannot be decoded",
    "too_short": "shorter than the minimum duration",
}


def probe_video(path: str | Path, min_duration: float = 1.0, decode_check: bool = True) -> dict:
    """Measure a video file.

    Args:
        path (`str` or `Path`): the file.
        min_duration (`float`): videos shorter than this (seconds) get ``drop_reason="too_short"``.
        decode_check (`bool`): decode the first video frame to catch files whose headers look fine.

    Returns:
        `dict`: ``duration, fps, width, height, num_frames, has_audio, video_codec, audio_codec,
        drop_reason`` (``""`` when the video is usable), the probe columns of ``VIDEO_FEATURES``.
    """
    import av

    result = {
        "duration": 0.0, "fps": 0.0, "width": 0, "height": 0, "num_frames": 0,
        "has_audio": False, "video_codec": "", "audio_codec": "", "drop_reason": "",
    }
    path = Path(path)
    if not path.is_file():
        return {**result, "drop_reason": "missing_file"}
    if path.stat().st_size == 0:
        return {**result, "drop_reason": "empty_file"}
    try:
        container = av.open(str(path), timeout=30.0)
    except Exception as error:  # FFmpeg raises many kinds: every one means "cannot use this file"
        logger.info("probe %s: cannot open (%s)", path.name, error)
        from quilt_hf.curation.sources import VIDEO_EXTENSIONS

        media = VIDEO_EXTENSIONS + AUDIO_EXTENSIONS
        return {**result, "drop_reason": "unreadable" if path.suffix.lower() in media else "not_media"}
    with container:
        audio = container.streams.audio[0] if container.streams.audio else None
        if audio is not None:
            result["has_audio"] = True
            result["audio_codec"] = audio.codec_context.name or ""
        if not container.streams.video:
            return {**result, "drop_reason": "audio_only" if audio is not None else "no_media_streams"}
        video = container.streams.video[0]
        result["video_codec"] = video.codec_context.name or ""
        result["width"], result["height"] = int(video.codec_context.width or 0), int(video.codec_context.height or 0)
        rate = video.average_rate or video.guessed_rate or video.base_rate
        result["fps"] = float(rate) if rate else 0.0
        duration = 0.0
        if video.duration is not None and video.time_base is not None:
            duration = float(video.duration * video.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        result["duration"] = duration
        frames = int(video.frames or 0) or round(duration * result["fps"])
        result["num_frames"] = frames
        if duration <= 0 or frames <= 0 or result["width"] <= 0:
            return {**result, "drop_reason": "zero_length"}
        if decode_check:
            try:
                next(container.decode(video=0))
            except StopIteration:  # a video track without a single frame
                return {**result, "num_frames": 0, "drop_reason": "zero_length"}
            except Exception as error:  # corrupt stream data
                logger.info("probe %s: first frame does not decode (%s)", path.name, error)
                return {**result, "drop_reason": "undecodable"}
    if not result["has_audio"]:
        return {**result, "drop_reason": "no_audio"}
    if result["duration"] < min_duration:
        return {**result, "drop_reason": "too_short"}
    return result
