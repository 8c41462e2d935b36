"""Safe checkpoint loading (issue 14, item 3): flowbb's checkpoints load with ``torch.load(weights_only=True)``; a file
holding another pickled object runs no code unless the user asks for it by name (``trust=True`` /
``trust_checkpoint=true``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from flowbb.inference.checkpoint import FlowbbCheckpointError, load_checkpoint, read_checkpoint

REPO = Path(__file__).resolve().parents[2]


def write_marker(path: str) -> dict:
    """What unpickling a :class:`FileWriter` calls: writes ``path`` (the evidence that code from the file ran)."""
    Path(path).write_text("code from the checkpoint ran\n")
    return {}


class FileWriter:
    """An object whose unpickling writes a file (``__reduce__`` -> :func:`write_marker`)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (write_marker, (self.path,))


@pytest.fixture()
def crafted(tiny_checkpoint: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A real flowbb checkpoint with one extra entry whose unpickling writes ``marker`` (returns (ckpt, marker))."""
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    marker = tmp_path / "marker.txt"
    ckpt["callbacks"] = {"Innocent": FileWriter(marker)}
    path = tmp_path / "crafted.ckpt"
    torch.save(ckpt, path)
    assert not marker.exists()
    return path, marker


def test_own_checkpoint_loads_weights_only(tiny_checkpoint: Path) -> None:
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] > 0 and "ema_state_dict" in ckpt and "cfg" in ckpt["hyper_parameters"]
    assert read_checkpoint(tiny_checkpoint)["global_step"] == ckpt["global_step"]


def test_crafted_checkpoint_runs_no_code(crafted: tuple[Path, Path]) -> None:
    path, marker = crafted
    with pytest.raises(FlowbbCheckpointError) as info:
        load_checkpoint(path, device="cpu")
    msg = str(info.value)
    assert not marker.exists()
    assert "\n" not in msg and str(path) in msg and "trust_checkpoint=true" in msg
    assert "write_marker" in msg  # names what it refused
    # asked for by name, the same file is unpickled fully (and the payload really runs)
    loaded = load_checkpoint(path, device="cpu", trust=True)
    assert marker.is_file() and loaded.global_step > 0


def test_sample_cli_refuses_crafted_checkpoint(crafted: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    path, marker = crafted
    spec = importlib.util.spec_from_file_location("flowbb_sample_script", REPO / "scripts" / "sample.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="sample", overrides=[f"ckpt_path={path}", "lengths=[8]", "samples_per_length=1",
                                                       f"out_dir={tmp_path / 'out'}", "num_steps=1", "device=cpu",
                                                       "progress=false"])
    capsys.readouterr()
    assert script.run(cfg) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists() and not (tmp_path / "out").exists()
    assert len(err.splitlines()) == 1 and str(path) in err and "trust_checkpoint=true" in err, err
