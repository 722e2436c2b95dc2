from datasets import Dataset, Image

from quilt_hf import schema


def test_pair_table_keeps_quilt_column_names():
    quilt_columns = ["video_id", "chunk_id", "image_path", "caption", "noisy_text", "corrected_text", "medical_text", "roi_text", "med_umls_ids", "pathology", "magnification", "height", "width", "subset", "split", "video_duration", "pair_chunk_time", "fps"]
    assert set(quilt_columns) <= set(schema.PAIR_FEATURES)
    assert isinstance(schema.PAIR_FEATURES["image"], Image)
    for column in ("start", "end", "text_start", "text_end", "source", "asr_model", "pipeline_version"):
        assert column in schema.PAIR_FEATURES


def test_empty_rows_build_valid_tables():
    for features in (schema.VIDEO_FEATURES, schema.TRANSCRIPT_FEATURES, schema.CHUNK_FEATURES, schema.PAIR_FEATURES):
        table = Dataset.from_list([schema.empty_row(features)], features=features)
        assert table.features == features


def test_pathology_labels_are_quilts_eighteen():
    assert len(schema.PATHOLOGY_LABELS) == 18 == len(set(schema.PATHOLOGY_LABELS))
    assert set(schema.MAGNIFICATION_CLASSES) == {0, 1, 2}
