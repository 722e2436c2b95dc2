"""Nothing is tuned on the held-out lectures: the lexicon build reads no file under
``benchmarks/heldout_lectures`` (issue #10, item 2). Every file the real build opens is traced with an audit
hook, so a new input added to the build later is checked too."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HELDOUT = (REPO / "benchmarks" / "heldout_lectures").resolve()
_TRACE: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _TRACE is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _TRACE.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def _opened_while(run) -> list[Path]:
    global _TRACE
    _TRACE = []
    try:
        run()
    finally:
        opened, _TRACE = _TRACE, None
    return [Path(p).resolve() for p in opened]


def _is_heldout(path: Path) -> bool:
    return path == HELDOUT or HELDOUT in path.parents


def test_the_trace_sees_a_read_of_a_heldout_file():
    """The check can fail: reading the held-out ground truth is seen."""
    opened = _opened_while(lambda: (HELDOUT / "ground_truth.json").read_bytes())
    assert any(_is_heldout(p) for p in opened)


@pytest.mark.slow
def test_lexicon_build_reads_no_heldout_file(tmp_path, monkeypatch):
    for module, pip in (("simple_icd_10_cm", "simple-icd-10-cm==1.5.0"), ("spellchecker", "pyspellchecker==0.9.1")):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"the lexicon build needs its inputs: pip install -e '.[lexicon]' ({pip})")
    spec = importlib.util.spec_from_file_location("build_lexicon", REPO / "dataset_scripts" / "build_lexicon.py")
    build_lexicon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_lexicon)
    monkeypatch.setattr(sys, "argv", ["build_lexicon.py", "--out-dir", str(tmp_path)])
    opened = _opened_while(build_lexicon.main)
    assert (tmp_path / "histopath_lexicon.tsv").stat().st_size > 100_000  # the real build ran
    assert build_lexicon.CORE.resolve() in opened  # and its inputs were traced
    assert not [p for p in opened if _is_heldout(p)]
    # its outputs are the committed lexicon: built from these inputs alone
    committed = (REPO / "quilt_hf" / "data" / "histopath_lexicon.tsv").read_text(encoding="utf-8")
    assert (tmp_path / "histopath_lexicon.tsv").read_text(encoding="utf-8") == committed
