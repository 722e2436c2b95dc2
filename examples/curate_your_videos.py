"""Curate your own narrated histopathology videos into image-text pairs, then publish them.

    python examples/curate_your_videos.py --videos /path/to/videos --output runs/my_pairs

The same from the command line (every option: `quilt curate --help`):

    quilt curate --videos /path/to/videos --output runs/my_pairs --asr_model openai/whisper-large-v3-turbo
    quilt publish --dataset runs/my_pairs/pairs --output runs/my_dataset   # Hub layout; --push --repo_id to upload

A manifest (CSV/JSONL with a `path` or `url` column, plus title/channel/license) works in place of a folder.
The run is resumable: start it again after an interruption and it finishes the same pairs.
"""

from __future__ import annotations

import argparse
import json
import logging

from datasets import load_from_disk

from quilt_hf.curation.cli import CurateConfig, run_curate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", required=True, help="folder of videos or a manifest")
    parser.add_argument("--output", required=True)
    parser.add_argument("--asr-model", default=None, help="Whisper by Hub name or folder (default: see README)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    stats = run_curate(CurateConfig(videos=args.videos, output=args.output, asr_model=args.asr_model))
    print(json.dumps({k: stats[k] for k in ("videos", "videos_kept", "pairs", "dropped")}, indent=2))
    pairs = load_from_disk(f"{args.output}/pairs")
    for row in pairs.select(range(min(3, len(pairs)))):
        print(f"[{row['video_id']} {row['start']:.0f}-{row['end']:.0f}s] {row['caption'][:120]}")


if __name__ == "__main__":
    main()
