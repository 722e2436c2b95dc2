import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from quilt_hf import cli


def test_top_level_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_is_an_error(capsys):
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"quilt {name}" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "quilt_hf", "--help"], capture_output=True, text=True, check=True)
    assert "commands:" in result.stdout


@dataclass
class _Config:
    """A test command."""

    name: str = field(default="a", metadata={"help": "a name"})
    size: int = field(default=1, metadata={"help": "a size"})


def _command(monkeypatch):
    import types

    module = types.ModuleType("fake_cmd")
    module.Config = _Config
    module.run = lambda config: config
    monkeypatch.setitem(sys.modules, "fake_cmd", module)
    return cli.Command("fake", "fake_cmd", "Config", "run", "fake")


def test_yaml_config_sets_options_and_command_line_wins(tmp_path, monkeypatch):
    command = _command(monkeypatch)
    config_file = tmp_path / "c.yaml"
    config_file.write_text("name: from-yaml\nsize: 7\n")
    config, _ = cli.parse_command_args(command, ["--config", str(config_file), "--size", "9"])
    assert config == _Config(name="from-yaml", size=9)


def test_yaml_config_rejects_unknown_options(tmp_path, monkeypatch):
    command = _command(monkeypatch)
    config_file = tmp_path / "c.yaml"
    config_file.write_text("nmae: typo\n")
    with pytest.raises(SystemExit):
        cli.parse_command_args(command, ["--config", str(config_file)])


def test_curate_text_options_reach_the_text_processor():
    """--text_correction_threshold (and every --text_* option) is passed on, not silently dropped."""
    from quilt_hf.curation.cli import CurateConfig, build_text_stage

    processor = build_text_stage(CurateConfig(videos="v", output="o", text_correction_threshold=0.97))
    assert "t0.97" in processor.name
