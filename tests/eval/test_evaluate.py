"""The evaluation pipeline end to end on real chains used as samples, with the tiny random ESMFold.

In-process tests (fast) run flowbb.eval.runner.evaluate on a composed config; the ``slow`` ones run
``scripts/evaluate.py`` as a subprocess: the full CLI, a SIGKILLed-then-resumed run compared with an
uninterrupted one, and the missing-weights error.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from flowbb.data.structure_io.read import read_chains

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "evaluate.py"


def compose_cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="evaluate", overrides=overrides)


def _strip_timing(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "timing"}


def _per_sample(out: Path) -> dict[str, dict]:
    return {
        f.name: _strip_timing(json.loads(f.read_text())) for f in sorted((out / "per_sample").glob("*.json"))
    }


# ---------------------------------------------------------------- in-process (fast)
@pytest.fixture(scope="module")
def fast_run(
    samples_dir: Path, reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str], dict]:
    from flowbb.eval.runner import evaluate

    out = tmp_path_factory.mktemp("eval_fast")
    overrides = [
        f"samples_dir={samples_dir}",
        f"out_dir={out}",
        "folding=tiny_random",
        "folding.device=cpu",
        "inverse_folding.device=cpu",
        "inverse_folding.num_seqs=2",
        f"reference={reference_dir}",
        "novelty.designable_only=false",
        "novelty.num_workers=0",
        "diversity.designable_only=false",
        "progress=false",
        "group_size=2",
    ]
    summary = evaluate(compose_cfg(overrides))
    return out, overrides, summary


def test_pipeline_writes_all_outputs(fast_run: tuple, small_chains: list) -> None:
    out, _, summary = fast_run
    for name in (
        "samples.csv",
        "sequences.csv",
        "summary.json",
        "sc_rmsd_by_length.png",
        "designability_by_length.png",
        "secondary_structure_by_length.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    samples = pd.read_csv(out / "samples.csv")
    names = ["1SHG", "length_57/sample_0", "1BPI", "1CSP"]  # by length, then name; *_traj.pdb skipped
    assert samples["name"].tolist() == names
    assert samples["sc_rmsd"].notna().all() and (samples["sc_rmsd"] >= 0).all()
    geometry = ["ca_ca_mean", "ca_ca_deviation", "clashes", "clashes_per_100", "rg", "rg_ratio"]
    assert samples[geometry].notna().all().all() and samples["clashes"].eq(0).all()  # flowbb.geometry.report keys
    assert samples["novelty_tm"].round(6).eq(1.0).all()  # each backbone is in the reference set
    assert samples["novelty_match"].tolist() == ["1SHG.pdb:A", "1SHG.pdb:A", "1BPI.pdb:A", "1CSP.pdb:A"]
    # the poly-GLY backbone (sampler output) has no native sequence, hence no recovery
    assert samples["native_recovery"].isna().tolist() == [False, True, False, False]
    seqs = pd.read_csv(out / "sequences.csv")
    assert len(seqs) == 4 * 2 and set(seqs["seq_idx"]) == {0, 1}
    for _, row in seqs.iterrows():
        assert len(row["sequence"]) == samples.set_index("name").loc[row["name"], "length"]
        folded = read_chains(out / row["folded_pdb"]).chains[0]
        assert folded.sequence == row["sequence"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["meaningless"] is True and "meaningless" in on_disk["warning"]
    assert on_disk["models"]["folding"] == "tiny_random"
    assert set(on_disk["per_length"]) == {"57", "58", "67"} and on_disk["overall"]["n"] == 4
    # L=57: the chain and its poly-GLY copy are one structure: TM 1, one cluster
    div57 = on_disk["per_length"]["57"]["diversity"]
    assert div57["n"] == 2 and div57["num_clusters"] == 1 and div57["mean_pairwise_tm"] == pytest.approx(1.0)
    assert on_disk["overall"]["diversity"]["num_clusters"] == 3
    assert 0.3 < on_disk["overall"]["native_recovery_mean"] < 0.9
    assert summary["overall"] == on_disk["overall"]


def test_finished_run_is_skipped_and_other_settings_refused(
    fast_run: tuple, tmp_path: Path, monkeypatch
) -> None:
    from flowbb.eval import runner

    out, overrides, _ = fast_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = _per_sample(copy)
    # a finished run loads no model at all
    monkeypatch.setattr(runner, "_instantiate", lambda node: pytest.fail("models loaded for a finished run"))
    again = [o if not o.startswith("out_dir=") else f"out_dir={copy}" for o in overrides]
    runner.evaluate(compose_cfg(again))
    assert _per_sample(copy) == before
    assert (copy / "samples.csv").read_text() == (out / "samples.csv").read_text()
    with pytest.raises(runner.EvaluationError, match="another evaluation configuration"):
        runner.evaluate(compose_cfg(again + ["seed=1"]))


def test_bad_samples_dir_is_a_clear_error(tmp_path: Path) -> None:
    from flowbb.eval.runner import evaluate

    with pytest.raises(FileNotFoundError, match="no such folder"):
        evaluate(
            compose_cfg(
                [f"samples_dir={tmp_path / 'nope'}", f"out_dir={tmp_path / 'o'}", "folding=tiny_random"]
            )
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no structure files"):
        evaluate(
            compose_cfg(
                [f"samples_dir={tmp_path / 'empty'}", f"out_dir={tmp_path / 'o'}", "folding=tiny_random"]
            )
        )


# ---------------------------------------------------------------- CLI subprocesses (slow)
def _cli_args(samples_dir: Path, out: Path, reference_dir: Path) -> list[str]:
    return [
        sys.executable,
        str(SCRIPT),
        f"samples_dir={samples_dir}",
        f"out_dir={out}",
        "folding=tiny_random",
        "folding.device=cpu",
        "inverse_folding.device=cpu",
        f"reference={reference_dir}",
        "novelty.designable_only=false",
        "diversity.designable_only=false",
        "group_size=1",
    ]


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HOME"] = str(
        tmp / "hf_home"
    )  # an empty Hugging Face cache: no ESMFold weights, whatever the machine has
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONWARNINGS"] = "ignore"
    return env


@pytest.fixture(scope="module")
def cli_run(samples_dir: Path, reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval_cli")
    proc = subprocess.run(
        _cli_args(samples_dir, out, reference_dir),
        check=False,
        cwd=REPO,
        env=_env(out.parent),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "meaningless" in proc.stderr
    return out


@pytest.mark.slow
def test_cli_end_to_end(cli_run: Path) -> None:
    samples = pd.read_csv(cli_run / "samples.csv")
    assert len(samples) == 4
    assert len(pd.read_csv(cli_run / "sequences.csv")) == 4 * 8  # 8 designs per backbone by default
    summary = json.loads((cli_run / "summary.json").read_text())
    assert summary["settings"]["num_seqs"] == 8 and summary["settings"]["temperature"] == 0.1
    assert summary["meaningless"] is True
    assert (cli_run / "evaluate_config.yaml").is_file()
    assert len(list((cli_run / "folded").rglob("*.pdb"))) == 32


@pytest.mark.slow
def test_killed_then_resumed_equals_uninterrupted(
    cli_run: Path, samples_dir: Path, reference_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli_args(samples_dir, out, reference_dir),
        cwd=REPO,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if list((out / "per_sample").glob("*.json")):
                break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_at_kill = sorted(f.name for f in (out / "per_sample").glob("*.json"))
    assert 1 <= len(done_at_kill) < 4, f"kill did not land mid-run: {done_at_kill}"
    assert not (out / "samples.csv").exists()
    resumed = subprocess.run(
        _cli_args(samples_dir, out, reference_dir),
        check=False,
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    n = len(done_at_kill)
    assert f"4 samples ({n} finished, {4 - n} to evaluate)" in resumed.stdout + resumed.stderr
    assert (out / "samples.csv").read_text() == (cli_run / "samples.csv").read_text()
    assert (out / "sequences.csv").read_text() == (cli_run / "sequences.csv").read_text()
    assert _per_sample(out) == _per_sample(cli_run)
    assert not list(out.rglob(".*.tmp*"))  # no half-written files left


@pytest.mark.slow
def test_cli_without_esmfold_weights_exits_with_the_clear_error(samples_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), f"samples_dir={samples_dir}", f"out_dir={tmp_path / 'o'}"],
        check=False,
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "ESMFold weights not found" in proc.stderr
    assert "huggingface-cli download facebook/esmfold_v1" in proc.stderr
    assert "folding.model_path" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "samples.csv").exists()
