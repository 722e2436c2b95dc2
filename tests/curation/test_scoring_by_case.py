"""Per-hard-case curation scores against a ground truth in the held-out lectures' format."""

from __future__ import annotations

import json

from quilt_hf.curation.scoring import histology_scores_by_case, pair_image_times, pairing_by_case


def _truth() -> dict:
    def iv(i, start, end, kind, case, histology, region=None, text=""):
        return {"interval_id": i, "start": start, "end": end, "kind": kind, "hard_case": case, "histology": histology,
                "source_image": "img" if histology else None, "region": region, "text": text}

    return {"v": {
        "video_id": "v",
        "intervals": [
            iv(0, 0, 10, "title", "pink_slide", False),
            iv(1, 10, 20, "static", "ihc", True, [0, 0, 5, 5]),
            iv(2, 20, 30, "static", "off_topic_talk", True, [0, 0, 5, 5]),  # the same field, chatter over it
            iv(3, 30, 40, "static", "cytology", True, [5, 5, 9, 9]),
        ],
        "narration": [
            {"start": 1, "end": 3, "text": "welcome", "interval_id": 0, "off_topic": False},
            {"start": 11, "end": 19, "text": "brown nuclei in the tumour cells", "interval_id": 1, "off_topic": False},
            {"start": 21, "end": 25, "text": "my phone is ringing sorry", "interval_id": 2, "off_topic": True},
            # spoken over the IHC field but describes the next (cytology) one
            {"start": 28, "end": 32, "text": "next the smear shows clusters", "interval_id": 3, "off_topic": False},
        ],
    }}


def test_histology_by_case(tmp_path):
    cache = tmp_path
    (cache / "frames" / "f").mkdir(parents=True)
    (cache / "histology").mkdir()
    key_images = [{"start": 0, "end": 10}, {"start": 10, "end": 20}, {"start": 20, "end": 30}, {"start": 30, "end": 40}]
    (cache / "frames" / "f" / "intervals.json").write_text(json.dumps({"intervals": key_images}))
    (cache / "histology" / "h.json").write_text(json.dumps([[True, 0.9], [True, 0.9], [False, 0.1], [False, 0.2]]))
    counts = histology_scores_by_case(cache, {"v": {"frames_key": "f", "histology_key": "h"}}, _truth())
    assert counts["pink_slide"] == {"fp": 1}
    assert counts["ihc"] == {"tp": 1}
    assert counts["off_topic_talk"] == {"fn": 1} and counts["cytology"] == {"fn": 1}


def test_pairing_by_case_uses_the_image_interval_and_the_described_interval(tmp_path):
    cache = tmp_path
    (cache / "frames" / "f").mkdir(parents=True)
    (cache / "align").mkdir()
    key_images = [{"start": 10, "end": 20}, {"start": 30, "end": 40}]
    (cache / "frames" / "f" / "intervals.json").write_text(json.dumps({"intervals": key_images}))
    chunks = [{"chunk_id": 0, "k": 0, "interval": 0}, {"chunk_id": 1, "k": 0, "interval": 0},
              {"chunk_id": 2, "k": 0, "interval": 1}]
    (cache / "align" / "a.json").write_text(json.dumps(chunks))
    times = pair_image_times(cache, {"v": {"frames_key": "f", "align_key": "a"}})
    assert times[("v", 2, 0)] == (30, 40)
    pairs = [
        # chunk spans 10-30 s (merged with the same field) but the image is the 10-20 s one
        {"video_id": "v", "chunk_id": 0, "image_id": "v_0_0", "start": 10, "end": 30, "text_start": 10, "text_end": 20},
        # chatter over the unchanged field: same field, so the image matches; counted as off-topic
        {"video_id": "v", "chunk_id": 1, "image_id": "v_1_0", "start": 10, "end": 30, "text_start": 20, "text_end": 26},
        # the window ends before the sentence that describes the cytology image: wrong
        {"video_id": "v", "chunk_id": 2, "image_id": "v_2_0", "start": 30, "end": 40, "text_start": 20, "text_end": 29},
    ]
    result = pairing_by_case(pairs, _truth(), times)
    assert result["ihc"] == {"pairs": 2, "correct": 2, "off_topic": 1}
    assert result["cytology"] == {"pairs": 1, "off_topic": 1} and result["cytology"]["correct"] == 0
