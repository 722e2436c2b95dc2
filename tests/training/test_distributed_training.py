"""Every documented launch form of ``quilt train`` runs, and two CPU processes (gloo, ``torchrun``) train the
same model as one process on the whole batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_python_m_quilt_hf_cli_prints_the_train_help():
    for module in ("quilt_hf.cli", "quilt_hf"):
        done = _run([sys.executable, "-m", module, "train", "--help"])
        assert "usage: quilt train" in done.stdout and "--dataset" in done.stdout, module


@pytest.mark.slow
def test_accelerate_launch_and_the_quilt_script_reach_the_train_command():
    done = _run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                 "-m", "quilt_hf.cli", "train", "--help"])
    assert "usage: quilt train" in done.stdout
    beside = Path(sys.executable).parent / "quilt"  # the venv's script, also when its bin/ is not on PATH
    script = str(beside) if beside.is_file() else shutil.which("quilt")
    if script is None:
        pytest.skip("the quilt console script is not installed (pip install -e .)")
    assert "usage: quilt train" in _run([script, "train", "--help"]).stdout


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_process_on_the_whole_batch(tiny_clip_dir, color_pairs, tmp_path):
    from safetensors.torch import load_file

    color_pairs.select(range(10)).save_to_disk(tmp_path / "pairs")  # 10 pairs: the global batch of 4 leaves a short last batch
    common = ["train", "--dataset", str(tmp_path / "pairs"), "--model", str(tiny_clip_dir), "--use_cpu",
              "--num_workers", "0", "--eval_fraction", "0", "--image_augmentation", "none", "--learning_rate", "1e-3",
              "--warmup", "0", "--logging_steps", "1", "--save_total_limit", "1", "--seed", "3"]
    # One process, global batch 4, two steps.
    _run([sys.executable, "-m", "quilt_hf", *common, "--output", str(tmp_path / "one"), "--batch_size", "4",
          "--max_steps", "2"])
    # Two processes of 2 through torchrun, one epoch: the last (short) batch must be dropped -> the same two steps.
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "quilt_hf.cli", *common, "--output", str(tmp_path / "two"), "--batch_size", "2", "--epochs", "1"])

    state = json.loads((tmp_path / "two" / "trainer_state.json").read_text())
    assert state["global_step"] == 2  # floor(10 / 4): no padded third batch of repeated pairs
    one = json.loads((tmp_path / "one" / "trainer_state.json").read_text())
    losses = [[entry["loss"] for entry in s["log_history"] if "loss" in entry] for s in (one, state)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)

    start = load_file(tiny_clip_dir / "model.safetensors")
    single = load_file(tmp_path / "one" / "model.safetensors")
    distributed = load_file(tmp_path / "two" / "model.safetensors")
    assert single.keys() == distributed.keys()
    update = torch.sqrt(sum(((single[k] - start[k]).double() ** 2).sum() for k in single))
    gap = torch.sqrt(sum(((single[k] - distributed[k]).double() ** 2).sum() for k in single))
    assert update > 1e-3  # the runs did train
    assert gap / update < 1e-4, f"parameters differ by {float(gap / update):.2e} of the update"
    for name in single:
        torch.testing.assert_close(distributed[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
