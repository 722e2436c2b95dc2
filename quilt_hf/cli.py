"""The ``quilt`` command: one entry point, one subcommand per job.

Each subcommand is a thin layer over the library: a configuration dataclass (its fields and their
``metadata["help"]`` become the options, through ``transformers.HfArgumentParser``) and a function that
runs it. ``--config FILE.yaml`` sets any option from a file; options on the command line win.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Command:
    """A subcommand: where its configuration dataclass and runner live (imported only when used)."""

    name: str
    module: str
    config: str
    runner: str
    summary: str

    def load(self) -> tuple[type, Callable]:
        module = importlib.import_module(self.module)
        return getattr(module, self.config), getattr(module, self.runner)


COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        Command(
            "demo",
            "quilt_hf.demo",
            "DemoConfig",
            "run_demo",
            "Run every stage on the embedded demo corpus into outputs/demo/ and write a report.",
        ),
        Command(
            "curate",
            "quilt_hf.curation.cli",
            "CurateConfig",
            "run_curate",
            "Curate narrated histopathology videos into image-text pairs (resumable): pairs/, chunks/, stats.json.",
        ),
        Command(
            "train",
            "quilt_hf.training.train",
            "TrainConfig",
            "run_train",
            "Fine-tune a CLIP-style model (QuiltNet) on image-text pairs; the output loads with from_pretrained.",
        ),
        Command(
            "eval",
            "quilt_hf.evaluation.cli",
            "EvalConfig",
            "run_eval",
            "Zero-shot, linear-probe and retrieval evaluation of CLIP-like models (JSON, Markdown, plots, model-index).",
        ),
        Command(
            "publish",
            "quilt_hf.publishing.publish",
            "PublishConfig",
            "run_publish",
            "Merge pairs tables into a Hub-layout dataset (dedup, decontamination, leakage-safe splits, card); push if asked.",
        ),
        Command(
            "import",
            "quilt_hf.publishing.importers",
            "ImportConfig",
            "run_import",
            "Import the Quilt-1M release (lookup CSV + zip parts) or other image-text sources as a pairs table.",
        ),
        Command(
            "rebuild",
            "quilt_hf.publishing.rebuild",
            "RebuildConfig",
            "run_rebuild",
            "Rebuild Quilt-1M's video images from your own video downloads and the release's recon files.",
        ),
        Command(
            "app",
            "quilt_hf.app.cli",
            "AppConfig",
            "run_app",
            "Web app (Gradio): browse, search and flag pairs, try a model, read the leaderboard.",
        ),
        Command(
            "convert",
            "quilt_hf.convert.open_clip",
            "ConvertConfig",
            "run_convert",
            "Convert open_clip checkpoints (QuiltNet) to transformers and back; outputs equal to open_clip's.",
        ),
    )
}


def _top_level_help() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: quilt <command> [options]   (quilt <command> --help for its options)",
        "",
        "Turn narrated histopathology videos into image-text pairs, fine-tune CLIP models on them",
        "(QuiltNet) and benchmark them, on the Hugging Face stack.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += [
        "",
        "common options: --config FILE.yaml (any option from a file), --log-level LEVEL",
    ]
    return "\n".join(lines)


def build_parser(command: Command):
    """The ``HfArgumentParser`` of one subcommand, generated from its configuration dataclass."""
    from transformers import HfArgumentParser

    config_cls, _ = command.load()
    parser = HfArgumentParser(
        config_cls,
        prog=f"quilt {command.name}",
        description=(config_cls.__doc__ or command.summary).strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML file of options; the command line wins.")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="Logging verbosity."
    )
    return parser


def parse_command_args(command: Command, argv: Sequence[str]) -> tuple[object, argparse.Namespace]:
    """Parse ``argv`` into the command's configuration, reading ``--config`` first when given."""
    import yaml

    parser = build_parser(command)
    early, _ = parser.parse_known_args(argv)
    if early.config is not None:
        if not early.config.is_file():
            parser.error(f"--config {early.config}: no such file")
        values = yaml.safe_load(early.config.read_text()) or {}
        if not isinstance(values, dict):
            parser.error(f"--config {early.config}: expected a mapping of option names to values")
        known = {field.name for field in dataclasses.fields(parser.dataclass_types[0])}
        unknown = sorted(set(values) - known)
        if unknown:
            parser.error(f"--config {early.config}: unknown options {unknown}; see quilt {command.name} --help")
        parser.set_defaults(**values)
    namespace = parser.parse_args(argv)
    options = {field.name: getattr(namespace, field.name) for field in dataclasses.fields(parser.dataclass_types[0])}
    return parser.dataclass_types[0](**options), namespace


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Third-party libraries stay at warnings unless asked for debug output.
    if level != "DEBUG":
        for noisy in ("httpx", "urllib3", "datasets", "filelock", "fsspec"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_top_level_help())
        return 0
    if argv[0] in ("-V", "--version"):
        from quilt_hf import __version__

        print(f"quilt_hf {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"quilt: unknown command {name!r}\n\n{_top_level_help()}", file=sys.stderr)
        return 2
    command = COMMANDS[name]
    config, namespace = parse_command_args(command, rest)
    setup_logging(namespace.log_level)
    _, runner = command.load()
    try:
        result = runner(config)
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except UserFacingError as error:
        logger.error("%s", error)
        return 1
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":  # python -m quilt_hf.cli, accelerate launch -m quilt_hf.cli, torchrun -m quilt_hf.cli
    raise SystemExit(main())
