import csv
import json

import numpy as np
from factories import Scene, histology_like_image, slide_like_image
from PIL import Image

from quilt_hf.publishing.rebuild import RebuildConfig, chunk_windows, key_frame_chunks, run_rebuild

SIZE = (96, 128)


def test_recon_cells_in_the_release_shape():
    stable = [{0: ([[0.5, 5.5], [6.0, 9.0]],)}, {1: ([],)}, {"2": [[1, 2]]}]
    assert chunk_windows(stable, 3) == [[(0.5, 5.5), (6.0, 9.0)], [], [(1.0, 2.0)]]
    assert key_frame_chunks([1, 3, 5, 7, 9, 30], [1, 1, 1, 0, 1, 1], pair_chunk_time=10) == [[1, 3, 5], [9], [30]]


def _write_release_csvs(folder, videos):
    with (folder / "quilt_recon.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "key_frame_times", "predictions", "stable_times"])
        for video_id, (times, predictions, stable, _) in videos.items():
            writer.writerow([video_id, repr(times), repr(predictions), repr(stable)])
    with (folder / "quilt_data.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "pair_chunk_time", "height", "width", "fps", "chunk_id", "image_path", "it_pair",
                         "medical_text"])
        for video_id, (_, _, _, names) in videos.items():
            for chunk, chunk_names in enumerate(names):
                for name in chunk_names:
                    writer.writerow([video_id, 10, SIZE[0], SIZE[1], 10, chunk, name, 1, "text"])


def test_rebuild_makes_the_release_images_of_a_synthetic_video(tmp_path, make_video):
    a, b, c = (histology_like_image(s, SIZE) for s in (1, 2, 3))
    slide = slide_like_image(0, SIZE)
    videos_dir = tmp_path / "videos"
    videos_dir.mkdir()
    video = make_video([Scene(a, 6), Scene(slide, 2), Scene(b, 6), Scene(slide, 2), Scene(c, 2)], name="lecture.mp4",
                       size=SIZE)
    video.rename(videos_dir / "AAAAAAAAAAA.mp4")
    short = make_video([Scene(a, 3)], name="short.mp4", size=SIZE)
    short.rename(videos_dir / "SSSSSSSSSSS.mp4")
    name = lambda vid, k: f"{vid}_image_{k:08d}-0000-0000-0000-000000000000.jpg"  # noqa: E731
    release = {
        "AAAAAAAAAAA": ([1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 16.5, 17.5], [1, 1, 1, 0, 1, 1, 1, 0, 1, 1],
                        [{0: ([[0.5, 5.5]],)}, {1: ([[8.5, 13.5]],)}, {2: ([[16.2, 17.8]],)}],
                        [[name("AAAAAAAAAAA", 0)], [name("AAAAAAAAAAA", 1), name("AAAAAAAAAAA", 2)],
                         [name("AAAAAAAAAAA", 3)]]),
        "SSSSSSSSSSS": ([1.0, 20.0], [1, 1], [{0: ([[10.0, 19.0]],)}], [[name("SSSSSSSSSSS", 0)]]),
        "MMMMMMMMMMM": ([1.0], [1], [{0: ([[0.0, 4.0]],)}], [[name("MMMMMMMMMMM", 0)]]),
    }
    _write_release_csvs(tmp_path, release)
    config = RebuildConfig(recon=str(tmp_path / "quilt_recon.csv"), data=str(tmp_path / "quilt_data.csv"),
                           videos=str(videos_dir), output=str(tmp_path / "out"))
    report = run_rebuild(config)
    images = tmp_path / "out" / "images"
    assert sorted(p.name for p in images.iterdir()) == sorted([name("AAAAAAAAAAA", k) for k in (0, 1, 3)])
    for k, expected in ((0, a), (1, b), (3, c)):
        rebuilt = np.asarray(Image.open(images / name("AAAAAAAAAAA", k)), np.float32)
        assert np.abs(rebuilt - expected).mean() < 12, f"image {k} is not its scene"
    assert report["drops"] == {"video_shorter_than_recon": 1, "missing_video": 1}
    assert report["names_without_image"] == 1  # chunk 1 has one static interval for two names
    record = json.loads((tmp_path / "out" / "videos" / "AAAAAAAAAAA.json").read_text())
    assert record["key_frame_fallbacks"] == 1  # the 2 s window of chunk 2 gives no median: one key frame
    # Our static-interval detection finds the two long windows, not the 2-second one.
    assert record["recon_windows_we_do_not_find"] == [[16.2, 17.8]]
    # Resumable: a second run does no work and reports the same.
    stamp = (images / name("AAAAAAAAAAA", 0)).stat().st_mtime_ns
    again = run_rebuild(config)
    assert (images / name("AAAAAAAAAAA", 0)).stat().st_mtime_ns == stamp
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in report.items() if k != "seconds"}


def test_names_that_would_leave_the_output_folder_are_refused():
    from quilt_hf.publishing.rebuild import is_safe_name

    assert is_safe_name("vid_image_1.jpg", nested=True) and is_safe_name("part/vid_image_1.jpg", nested=True)
    for bad in ("../x.jpg", "/etc/x.jpg", "a/../../x.jpg", "C:\\x.jpg", "..\\x.jpg", ""):
        assert not is_safe_name(bad, nested=True), bad
    assert not is_safe_name("a/b", nested=False) and is_safe_name("dQw4w9WgXcQ", nested=False)


def test_rebuild_filters_non_histology_images_and_falls_back_to_key_frames(tmp_path, make_video):
    a, b = histology_like_image(4, SIZE), histology_like_image(5, SIZE)
    slide = slide_like_image(1, SIZE)
    videos_dir = tmp_path / "videos"
    videos_dir.mkdir()
    make_video([Scene(a, 6), Scene(slide, 6), Scene(b, 6)], name="v.mp4", size=SIZE).rename(videos_dir / "VVVVVVVVVVV.mp4")
    name = lambda k: f"VVVVVVVVVVV_image_{k:08d}-0000-0000-0000-000000000000.jpg"  # noqa: E731
    # Chunk 1's stable window is the slide (a non-histology stretch); its histology key frames are in scene b.
    release = {"VVVVVVVVVVV": ([1.0, 3.0, 9.0, 13.0, 15.0], [1, 1, 0, 1, 1],
                               [{0: ([[0.5, 5.5]],)}, {1: ([[6.5, 11.5]],)}], [[name(0)], [name(1)]])}
    _write_release_csvs(tmp_path, release)
    out = tmp_path / "out"

    def rebuild(histology: str) -> dict:
        return run_rebuild(RebuildConfig(recon=str(tmp_path / "quilt_recon.csv"), data=str(tmp_path / "quilt_data.csv"),
                                         videos=str(videos_dir), output=str(out), compare=False, isolate=False,
                                         histology=histology))

    def image(k: int) -> np.ndarray:
        return np.asarray(Image.open(out / "images" / name(k)), np.float32)

    report = rebuild("none")  # no filter: the slide's median is chunk 1's image
    assert report["frames_not_histology"] == 0 and np.abs(image(1) - slide).mean() < 12
    report = rebuild("learned")  # another filter: the video is done again
    record = json.loads((out / "videos" / "VVVVVVVVVVV.json").read_text())
    assert report["frames_not_histology"] == 1 and report["images"] == 2
    assert [(d["chunk"], d["window"], d["reason"]) for d in record["frame_drops"]] == [(1, [6.5, 11.5], "not_histology")]
    assert record["key_frame_fallbacks"] == 1 and record["histology"] == "learned"
    assert np.abs(image(0) - a).mean() < 12, "a histology window is kept"
    assert np.abs(image(1) - b).mean() < 12, "the rejected window's chunk takes its key frame"
    # The filter's weights are part of what a resumed run compares: same spec and weights, the video is skipped;
    # a record made with other weights of the same spec is done again.
    assert record["histology_identity"].startswith("learned@") and len(record["histology_identity"]) > 10
    (out / "images" / name(0)).unlink()
    rebuild("learned")
    assert not (out / "images" / name(0)).exists(), "same filter and weights: skipped"
    record["histology_identity"] = "learned@other-weights"
    (out / "videos" / "VVVVVVVVVVV.json").write_text(json.dumps(record))
    rebuild("learned")
    assert (out / "images" / name(0)).exists(), "other weights: done again"


def test_rebuild_fails_before_any_video_when_the_histology_model_is_broken(tmp_path):
    import pytest

    from quilt_hf.errors import ModelLoadError

    _write_release_csvs(tmp_path, {"VVVVVVVVVVV": ([1.0], [1], [{0: ([[0.0, 4.0]],)}], [["VVVVVVVVVVV_image_0.jpg"]])})
    (tmp_path / "videos").mkdir()
    config = RebuildConfig(recon=str(tmp_path / "quilt_recon.csv"), data=str(tmp_path / "quilt_data.csv"),
                           videos=str(tmp_path / "videos"), output=str(tmp_path / "out"),
                           histology=f"learned:{tmp_path / 'missing.json'}")
    with pytest.raises(ModelLoadError):
        run_rebuild(config)
    assert not (tmp_path / "out").exists()
