"""W&B mode selection (offline without key or network, never hanging) and the CSV logger."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from flowbb.errors import UserError
from flowbb.training import loggers as L


@pytest.fixture
def no_wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    return tmp_path


def test_no_key_means_offline(no_wandb_env: Path) -> None:
    assert L.resolve_wandb_mode("auto") == ("offline", "no W&B API key (WANDB_API_KEY or netrc)")


def test_key_without_network_is_offline_within_timeout(no_wandb_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "https://10.255.255.1")  # non-routable: a connect would hang
    t0 = time.perf_counter()
    mode, reason = L.resolve_wandb_mode("auto", timeout_s=0.5)
    assert time.perf_counter() - t0 < 2.0
    assert mode == "offline" and "not reachable" in reason


def test_netrc_key_is_found(no_wandb_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = no_wandb_env / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "1" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert L.has_wandb_key()


def test_explicit_and_env_modes(no_wandb_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert L.resolve_wandb_mode("disabled")[0] == "disabled"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert L.resolve_wandb_mode("auto")[0] == "disabled"
    with pytest.raises(UserError, match="logger.wandb.mode"):
        L.resolve_wandb_mode("sometimes")


WB_CFG = {"wandb": {"project": "p", "entity": None, "name": "n", "mode": "auto", "probe_timeout_s": 0.5, "tags": [],
                    "log_model": False}}


def test_online_without_key_stops_at_once_with_the_choices(no_wandb_env: Path, monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    run_dir = no_wandb_env / "run"
    for how in ("config", "env"):
        cfg = OmegaConf.create(WB_CFG)
        if how == "config":
            cfg.wandb.mode = "online"
        else:
            monkeypatch.setenv("WANDB_MODE", "online")
        t0 = time.perf_counter()
        with pytest.raises(UserError) as info:
            L.build_loggers(cfg, run_dir)
        assert time.perf_counter() - t0 < 1.0  # no prompt, no network wait
        msg = str(info.value)
        assert "\n" not in msg
        for choice in ("WANDB_API_KEY", "`wandb login`", "WANDB_MODE=offline", "logger=csv"):
            assert choice in msg, (how, msg)
    assert not (run_dir / "wandb").exists()
    monkeypatch.setenv("WANDB_API_KEY", "2" * 40)  # with a key, online is allowed (no probe when asked explicitly)
    assert L.resolve_wandb_mode("online")[0] == "online"


def test_unknown_wandb_mode_env_is_a_user_error(no_wandb_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(UserError, match="WANDB_MODE=sometimes"):
        L.resolve_wandb_mode("auto")


def test_empty_wandb_mode_counts_as_unset(no_wandb_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "  ")
    assert L.resolve_wandb_mode("auto") == ("offline", "no W&B API key (WANDB_API_KEY or netrc)")
    loggers = L.build_loggers(OmegaConf.create(WB_CFG), no_wandb_env / "run")
    assert "WANDB_MODE" not in os.environ  # wandb would reject the empty value when the run starts
    assert loggers[1]._wandb_init["mode"] == "offline"


@pytest.mark.slow
def test_empty_wandb_mode_starts_an_offline_run(no_wandb_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real wandb: with ``WANDB_MODE=`` the offline run starts (before, wandb's settings check crashed)."""
    monkeypatch.setenv("WANDB_MODE", "")
    monkeypatch.setenv("HOME", str(no_wandb_env))
    run_dir = no_wandb_env / "run"
    wb = L.build_loggers(OmegaConf.create(WB_CFG), run_dir)[1]
    try:
        assert wb.experiment.settings.mode == "offline"
    finally:
        wb.experiment.finish()
    assert list((run_dir / "wandb").glob("offline-run-*"))


def test_build_loggers_groups(no_wandb_env: Path) -> None:
    run_dir = no_wandb_env / "run"
    assert L.build_loggers(OmegaConf.create({}), run_dir) == []
    csv_only = L.build_loggers(OmegaConf.create({"csv": {"flush_logs_every_n_steps": 5}}), run_dir)
    assert [type(x).__name__ for x in csv_only] == ["ResumableCSVLogger"]
    with pytest.raises(UserError, match="unknown entries"):
        L.build_loggers(OmegaConf.create({"tensorboard": {}}), run_dir)
    wb_cfg = OmegaConf.create({"wandb": {"project": "p", "entity": None, "name": "n", "mode": "auto",
                                         "probe_timeout_s": 0.5, "tags": [], "log_model": False}})
    loggers = L.build_loggers(wb_cfg, run_dir)
    # CSV always accompanies W&B; the W&B run is offline here and keeps its id for resumes
    assert [type(x).__name__ for x in loggers] == ["ResumableCSVLogger", "WandbLogger"]
    run_id = (run_dir / L.WANDB_ID_FILE).read_text().strip()
    again = L.build_loggers(wb_cfg, run_dir)
    assert again[1]._id == run_id


def test_csv_logger_appends_on_resume(tmp_path: Path) -> None:
    first = L.ResumableCSVLogger(tmp_path, flush_logs_every_n_steps=1)
    first.log_metrics({"loss": 1.0}, step=1)
    first.save()
    second = L.ResumableCSVLogger(tmp_path, flush_logs_every_n_steps=1)
    second.log_metrics({"loss": 0.5, "lr": 1e-4}, step=2)
    second.save()
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2"]
    assert rows[1]["lr"] == "0.0001" and rows[0]["loss"] == "1.0"
