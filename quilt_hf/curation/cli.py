"""``quilt curate``: narrated videos (a folder, a manifest, or YouTube) to the pairs table on disk."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

from quilt_hf import object_store
from quilt_hf.curation.text.cli_options import TextStageOptions
from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)


def _ray_option(name: str):
    """The ``--ray_NAME`` option declared once: RayOptions' field NAME's default and help (the module does not
    import Ray)."""
    from quilt_hf.curation.ray_runner import RayOptions

    spec = RayOptions.__dataclass_fields__[name]
    return field(default=spec.default, metadata=dict(spec.metadata))


@dataclass(kw_only=True)
class CurateConfig(TextStageOptions):
    """Curate narrated histopathology videos into image-text pairs (Quilt's pipeline, resumable)."""

    videos: str = field(metadata={"help": "A folder of videos, or a manifest (.csv/.tsv/.jsonl with path or url per row)."})
    output: str = field(metadata={"help": (
        "Output folder: pairs/ and chunks/ and videos/ (datasets on disk) and stats.json; or an object-store URL "
        "(s3://bucket/prefix; needs quilt_hf[s3] and --cache_dir; the store's own settings, e.g. AWS_ENDPOINT_URL): "
        "each run writes a new set under URL/sets/<id>/ and URL/latest.json names the current one "
        "(`quilt train --dataset URL/pairs` follows it).")})
    asr_model: str | None = field(
        default=None,
        metadata={"help": "Whisper model: Hub name or local folder. Default: the Hub default, else the offline model."},
    )
    asr_backend: str = field(default="transformers", metadata={"help": "ASR backend: transformers or faster-whisper."})
    asr_batch_size: int = field(default=1, metadata={"help": "ASR batch size."})
    asr_beams: int = field(
        default=1,
        metadata={"help": "Whisper beam search width: 1 is greedy decoding (the fastest); 5 is the default of "
                  "openai-whisper's command line and faster-whisper: fewer misheard terms, about twice the CPU "
                  "time of greedy decoding with the transformers backend (README, issue #15)."},
    )
    language: str | None = field(default=None, metadata={"help": "Spoken language (e.g. en); default: detected."})
    asr_prompt: str = field(
        default="none",
        metadata={
            "help": "Whisper prompt of lexicon terms for each video's topic (read from its title and channel): "
            "none; title (one prompted pass); guarded (a plain pass too: prompted segments that repeat the prompt "
            "or insert a term the plain pass has nothing like are replaced by the plain text); first_pass (guarded, "
            "and the plain pass's own terms and near-misses of terms choose the prompt and its topic too).",
            "choices": ["none", "title", "guarded", "first_pass"],
        },
    )
    asr_rescore: bool = field(
        default=False,
        metadata={
            "help": "Acoustic rescoring (transformers backend): for the words Whisper was unsure of, the lexicon's "
            "nearest terms by spelling and sound are scored by Whisper on the segment's audio, and a term replaces "
            "the heard words only when Whisper finds it more probable than what it wrote. About as "
            "slow again as recognition on CPU."
        },
    )
    device: str | None = field(default=None, metadata={"help": "Device for the models (cpu, cuda, cuda:1); default: auto."})
    histology: str = field(
        default="learned",
        metadata={"help": "Histology classifier: learned (default: a small offline colour-texture MLP), heuristic, "
                  "quilt-ensemble:<folder with Quilt's released ConvNeXt+DINO filter>, a transformers "
                  "image-classification model (name or "
                  "folder), or zero-shot:<CLIP-like model>."},
    )
    histology_threshold: float | None = field(default=None, metadata={"help": "Score at or above which a frame is histology."})
    sample_fps: float = field(default=1.0, metadata={"help": "Frames sampled per second of video."})
    min_static_seconds: float = field(default=3.0, metadata={"help": "Stable intervals this long give a median image."})
    frames_timeout: float = field(
        default=0.0, metadata={"help": "Seconds allowed to decode one video (0: 60 s + 2 x its duration)."}
    )
    asr_timeout: float = field(
        default=0.0, metadata={"help": "Seconds allowed for one video's speech recognition (0: 300 s + 10 x its duration); "
                               "a video over it is dropped as asr_timeout."}
    )
    text_timeout: float = field(
        default=0.0, metadata={"help": "Seconds allowed for one video's text stage (0: 300 s + 10 x its duration); "
                               "a video over it is dropped as text_timeout."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Per-video step cache (default: OUTPUT/cache)."})
    download_dir: str | None = field(default=None, metadata={"help": "Where manifest URLs are downloaded (youtube extra)."})
    runner: str = field(default="local", metadata={"help": "local (datasets) or ray (Ray Data, the ray extra)."})
    ray_address: str | None = field(default=None, metadata={"help": "Ray cluster address (runner=ray); default: a "
                                                                    "local Ray on this machine."})
    ray_num_cpus: int | None = field(default=None, metadata={"help": "CPUs of the local Ray (runner=ray, no address)."})
    ray_task_cpus: float = field(default=1.0, metadata={"help": "CPUs per Ray task of the CPU steps (decoding, align)."})
    ray_actor_cpus: float = field(default=0.25, metadata={"help": "CPUs reserved by each Ray model actor."})
    ray_actor_threads: int = _ray_option("actor_threads")
    ray_task_niceness: int = _ray_option("task_niceness")
    ray_asr_actors: int = field(default=1, metadata={"help": "Whisper actors under Ray (each loads the model once)."})
    ray_asr_gpus: float = field(default=0.0, metadata={"help": "GPUs per Whisper actor under Ray."})
    ray_histology_actors: int = field(default=1, metadata={"help": "Histology-classifier actors under Ray."})
    ray_histology_gpus: float = field(default=0.0, metadata={"help": "GPUs per histology actor under Ray."})
    ray_text_actors: int = field(default=1, metadata={"help": "Text-stage (LLM) actors under Ray."})
    ray_text_gpus: float = field(default=0.0, metadata={"help": "GPUs per text-stage actor under Ray."})
    ray_max_retries: int = field(default=3, metadata={"help": "Retries of a video whose Ray worker died; then it is "
                                                              "dropped as worker_lost."})
    ray_model_batch_size: int = field(default=0, metadata={"help": "Videos per call of a Ray model actor: the Whisper "
                                                                   "actor transcribes their 30 s windows together, "
                                                                   "--asr_batch_size at a time (0: --asr_batch_size)."})


def build_transcriber_factory(config: CurateConfig):
    """A zero-argument factory of the Whisper transcriber and the resolved model name (resolution fails at
    once, with the command that prepares the offline models, when no model is available)."""
    from quilt_hf.models import resolve_model

    if config.asr_beams < 1:  # before any model or video, also under Ray (whose workers build the model)
        raise UserFacingError(f"--asr_beams {config.asr_beams}: the beam search width is at least 1 (1: greedy)")
    model = resolve_model(config.asr_model, "asr")
    try:
        from quilt_hf.curation.asr import WhisperTranscriber
    except ImportError as error:
        raise UserFacingError(f"the ASR module cannot be imported ({error})") from error
    factory = functools.partial(
        WhisperTranscriber, model=model, backend=config.asr_backend, device=config.device,
        batch_size=config.asr_batch_size, language=config.language, num_beams=config.asr_beams,
    )
    return factory, model


def build_text_stage(config: CurateConfig):
    if not config.text_backend or config.text_backend == "none":
        return None
    try:
        import quilt_hf.curation.text  # noqa: F401  (a broken install fails here with a clear message)
    except ImportError as error:
        raise UserFacingError(
            f"the text stage is not available ({error}); run with --text-backend none to skip it"
        ) from error
    return config.build()  # every --text_* option and --lexicon reach the processor


def build_ray_runner(config: CurateConfig):
    """The Ray Data runner with the stage resources of ``config`` (imports Ray's runner module only here)."""
    import dataclasses

    from quilt_hf.curation.ray_runner import RayOptions, RayRunner

    # every RayOptions field NAME that has a `--ray_NAME` option takes it
    given = {f.name: getattr(config, f"ray_{f.name}") for f in dataclasses.fields(RayOptions)
             if hasattr(config, f"ray_{f.name}")}
    given["model_batch_size"] = config.ray_model_batch_size or config.asr_batch_size
    return RayRunner(options=RayOptions(**given))


def run_curate(
    config: CurateConfig, *, transcriber=None, text_processor=None, histology=None, frames_fn=None, load_audio=None
) -> dict:
    """Run ``quilt curate``; the keyword arguments replace the models built from ``config`` (tests, embedding).

    Returns:
        `dict`: the stats also written to ``OUTPUT/stats.json``.
    """
    from quilt_hf.curation.align import AlignOptions
    from quilt_hf.curation.frames import FrameOptions
    from quilt_hf.curation.histology import build_histology_classifier
    from quilt_hf.curation.pipeline import Curation, PipelineOptions, run_pipeline
    from quilt_hf.curation.runners import LocalRunner

    if config.asr_rescore and transcriber is None and config.asr_backend != "transformers":
        raise UserFacingError("--asr_rescore runs Whisper's decoder directly: it needs --asr_backend transformers")
    from quilt_hf.curation.sources import load_videos

    if config.runner not in ("local", "ray"):
        raise UserFacingError(f"--runner {config.runner}: expected local or ray")
    remote = object_store.is_url(config.output)
    if remote and not config.cache_dir:
        raise UserFacingError(
            f"--output {config.output} is an object store: give --cache_dir, a folder every worker can write (the "
            "step cache holds frames and pair images; on a cluster, a filesystem all nodes mount)")
    output = config.output if remote else Path(object_store.local_path(config.output))
    asr_name = None
    if transcriber is None:
        transcriber, asr_name = build_transcriber_factory(config)
    if text_processor is None:
        text_processor = build_text_stage(config)
    if histology is None:
        histology = build_histology_classifier(config.histology, config.histology_threshold, config.device)
    options = PipelineOptions(
        frames=FrameOptions(sample_fps=config.sample_fps, min_static_seconds=config.min_static_seconds),
        align=AlignOptions(),
        frames_timeout=config.frames_timeout,
        asr_prompt=config.asr_prompt,
        asr_rescore=config.asr_rescore,
        asr_timeout=config.asr_timeout,
        text_timeout=config.text_timeout,
    )
    videos = load_videos(config.videos, config.download_dir)
    logger.info("curating %d videos from %s into %s", len(videos), config.videos, output)
    curation = Curation(
        cache_dir=config.cache_dir or output / "cache",
        transcriber=transcriber,
        histology=histology,
        text_processor=text_processor,
        options=options,
        frames_fn=frames_fn,
        load_audio=load_audio,
        asr_name=asr_name,
        asr_language=config.language,
    )
    runner = build_ray_runner(config) if config.runner == "ray" else LocalRunner()
    return run_pipeline(videos, curation, output, runner=runner)
