"""Preprocessing: summary/log accounting, bad inputs, store contents, resumability (incl. SIGKILL), CLI."""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import biotite.structure as struc
import biotite.structure.io.pdb as bpdb
import numpy as np
import pandas as pd
import pytest

from flowbb.data.preprocess import (
    TOO_SHORT,
    PreprocessError,
    PreprocessInterrupted,
    PreprocessParams,
    preprocess,
    process_file,
    shard_path,
)
from flowbb.data.store import ARRAYS, METADATA_COLUMNS, RECORD_COLUMNS, ProcessedStore
from flowbb.data.structure_io import files as sio

REPO = Path(__file__).resolve().parents[2]


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _same_store(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "metadata.parquet"), pd.read_parquet(b / "metadata.parquet")
    )
    for name in ARRAYS:
        assert (a / f"{name}.npy").read_bytes() == (b / f"{name}.npy").read_bytes(), name
    assert (a / "files.csv").read_text() == (b / "files.csv").read_text()


@pytest.fixture()
def bad_raw(tmp_path, ddg_files, db55_files, copy_to) -> Path:
    """Two good files plus one file per failure reason."""
    raw = copy_to([ddg_files[0], db55_files[0]], tmp_path / "raw")
    (raw / "empty.pdb").write_bytes(b"")
    data = db55_files[1].read_bytes()
    (raw / "truncated.pdb.gz").write_bytes(data[: len(data) // 3])
    (raw / "random.cif").write_bytes(np.random.default_rng(0).bytes(3000))
    text = ddg_files[1].read_text().splitlines()
    (raw / "ca_only.pdb").write_text(
        "\n".join(l for l in text if not l.startswith("ATOM") or l[12:16] == " CA ")
    )
    (raw / "ligand_only.pdb").write_text(
        "\n".join(l for l in text if l.startswith("HETATM") and l[17:20] != "MSE")
    )
    atoms = [l for l in text if l.startswith("ATOM")]
    first_res = [l for l in atoms if l[22:26] == atoms[0][22:26]]
    (raw / "short.pdb").write_text("\n".join(atoms[: len(first_res) * 10]))  # a 10-residue chain
    (raw / "notes.txt").write_text("not a structure file name")
    return raw


def test_bad_inputs_are_logged_and_skipped(bad_raw, tmp_path):
    before = _tree_digest(bad_raw)
    summary = preprocess(bad_raw, tmp_path / "out", num_workers=2, progress=False)
    assert _tree_digest(bad_raw) == before  # input untouched
    expected = {
        "empty.pdb": sio.EMPTY,
        "truncated.pdb.gz": sio.TRUNCATED_GZIP,
        "random.cif": sio.NOT_A_STRUCTURE,
        "ca_only.pdb": sio.CA_ONLY,
        "ligand_only.pdb": sio.NO_PROTEIN,
        "short.pdb": TOO_SHORT,
    }
    files = pd.read_csv(tmp_path / "out" / "files.csv", keep_default_na=False).set_index("source_file")
    assert len(files) == 9 == summary["files_total"]  # every input file accounted for
    for name, reason in expected.items():
        assert files.loc[name, "status"] == "skipped" and files.loc[name, "reason"] == reason
    assert files.loc["notes.txt", "status"] == "ignored"
    assert summary["files_skipped"] == 6 and summary["files_with_chains"] == 2
    assert summary["skipped_by_reason"] == {r: 1 for r in expected.values()}
    log = (tmp_path / "out" / "preprocess.log").read_text()
    for name, reason in expected.items():
        assert f"SKIPPED {bad_raw / name}: {reason}" in log


def test_missing_raw_dir_is_one_clear_error(tmp_path):
    with pytest.raises(PreprocessError, match="does not exist"):
        preprocess(tmp_path / "nope", tmp_path / "out", progress=False)
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "preprocess.py"),
            f"raw_dir={tmp_path / 'nope'}",
            f"out_dir={tmp_path / 'o'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: raw_dir '{tmp_path / 'nope'}' does not exist (resolved: {tmp_path / 'nope'})"
    ]
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()


def test_records_and_metadata_follow_the_column_table(core_data, tmp_path, copy_to):
    """One protein file and one RNA file (bundled with the tests): every chain record has the fields RECORD_COLUMNS in
    table order, and metadata.parquet has exactly the columns of METADATA_COLUMNS with their dtypes."""
    files = [core_data / "pdb" / "ddg" / "1BPI.pdb", core_data / "rna" / "medium__1XJR__A.pdb.gz"]
    raw = copy_to(files, tmp_path / "raw")
    for f in files:
        meta, _ = process_file(raw, f.name, PreprocessParams())
        assert meta["status"] == "ok" and [tuple(chain) for chain in meta["chains"]] == [RECORD_COLUMNS]
    preprocess(raw, tmp_path / "out", num_workers=0, progress=False)
    frame = pd.read_parquet(tmp_path / "out" / "metadata.parquet")
    assert list(frame.columns) == [c.name for c in METADATA_COLUMNS]
    for column in METADATA_COLUMNS:
        dtype = frame[column.name].dtype
        if column.dtype in ("object", "str"):  # text (None where unknown) reads back as object or pandas' str
            assert dtype == object or pd.api.types.is_string_dtype(dtype), column
        else:
            assert dtype == column.dtype, column
    assert list(frame.molecule) == ["protein", "rna"] and list(frame.row) == [0, 1]
    assert frame.secondary_structure[1] == "" and np.isnan(frame.helix_frac[1]) and frame.pdb_id[0] == "1BPI"
    store = ProcessedStore(tmp_path / "out")
    for row in range(2):
        chain = store.chain(row)
        origin = 1 if row == 0 else 0  # CA, C4'
        points = chain["atoms"][chain["atom_mask"][:, origin], origin].astype(np.float64)
        rg = np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean())
        assert frame.radius_of_gyration[row] == pytest.approx(rg, rel=1e-9)


@pytest.mark.filterwarnings("ignore:.*elements were guessed")
def test_store_coordinates_equal_biotite(small_store, small_raw):
    store = ProcessedStore(small_store)
    meta = store.metadata
    assert list(meta.columns) == [c.name for c in METADATA_COLUMNS]
    assert list(meta["source_file"]) == sorted(meta["source_file"])  # consolidated in source order
    for row in range(len(store)):
        rec = meta.iloc[row]
        path = small_raw / rec.source_file
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            array = bpdb.get_structure(bpdb.PDBFile.read(handle), model=1, altloc="first")
        array = array[struc.filter_amino_acids(array) & (array.chain_id == rec.chain_id) & ~array.hetero]
        chain = store.chain(row)
        assert len(chain["atoms"]) == rec.length
        for slot, name in enumerate(("N", "CA", "C", "O")):
            want = array[array.atom_name == name].coord
            np.testing.assert_array_equal(chain["atoms"][chain["atom_mask"][:, slot], slot], want)
        ca = chain["atoms"][chain["atom_mask"][:, 1], 1]
        assert rec.radius_of_gyration == pytest.approx(
            np.sqrt(((ca - ca.mean(0)) ** 2).sum(1).mean()), rel=1e-4
        )
        assert rec.helix_frac + rec.strand_frac + rec.coil_frac == pytest.approx(1.0)
    with_header = [
        f
        for f in meta.source_file.unique()
        if "REMARK   2 RESOLUTION." in (small_raw / f).read_text(errors="ignore")
    ]
    assert with_header
    rows = meta[meta.source_file.isin(with_header)]
    assert rows.resolution.notna().all() and rows.method.str.contains("X-RAY").all()


def test_resume_after_partial_run_equals_uninterrupted(small_raw, small_store, tmp_path):
    out = tmp_path / "out"
    all_files = sorted(p.relative_to(small_raw).as_posix() for p in small_raw.rglob("*") if p.is_file())
    part = tmp_path / "part"
    for rel in all_files[::2]:  # a first run saw only half of the files ...
        (part / rel).parent.mkdir(parents=True, exist_ok=True)
        (part / rel).write_bytes((small_raw / rel).read_bytes())
        os.utime(part / rel, ns=((small_raw / rel).stat().st_atime_ns, (small_raw / rel).stat().st_mtime_ns))
    preprocess(part, out, num_workers=0, progress=False)
    # ... the shards of a run over the full folder are reused (same relative path, size, mtime)
    for rel in all_files[::2]:
        os.replace(shard_path(out, rel), shard_path(out, rel))
    before = _tree_digest(out)
    with pytest.raises(PreprocessError, match="made from raw_dir"):  # out was made from another raw_dir
        preprocess(small_raw, out, num_workers=2, progress=False)
    assert _tree_digest(out) == before
    summary = preprocess(small_raw, out, num_workers=2, progress=False, overwrite=True)
    assert summary["processed_this_run"] == len(all_files) - len(all_files[::2])
    assert summary["reused_from_earlier_runs"] == len(all_files[::2])
    _same_store(out, small_store)
    # a parameter change invalidates every shard
    summary = preprocess(small_raw, out, num_workers=0, progress=False, min_length=41)
    assert summary["processed_this_run"] == len(all_files)


def _finished_shards(out_dir: Path) -> list[Path]:
    """Completed shards only: pathlib's glob also matches the hidden ``.<h>.<pid>.tmp.npz`` being written."""
    return [p for p in (out_dir / "shards").glob("*/*.npz") if not p.name.startswith(".")]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, db55_files, ddg_files, copy_to):
    raw = copy_to(db55_files[:26] + ddg_files[:6], tmp_path / "raw")
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "preprocess.py"),
        f"raw_dir={raw}",
        "num_workers=2",
        "progress=false",
        "chunksize=1",
    ]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        cmd + [f"out_dir={killed}"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300  # generous: start-up (imports, Hydra) is slow on a loaded 2-core machine
    while time.time() < deadline and len(_finished_shards(killed)) < 5:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-run
    proc.wait()
    done_before = len(_finished_shards(killed))
    assert 5 <= done_before < 32 and not (killed / "metadata.parquet").exists()
    resumed = subprocess.run(cmd + [f"out_dir={killed}"], capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    clean = tmp_path / "clean"  # uninterrupted, in one process: the store must not depend on scheduling
    preprocess(raw, clean, num_workers=0, progress=False)
    _same_store(killed, clean)
    import json

    summary = json.loads((killed / "summary.json").read_text())
    assert summary["processed_this_run"] <= 32 - done_before
    assert summary["files_total"] == 32 and "chains kept" in resumed.stdout


def test_dead_worker_stops_with_clear_error_then_resumes(small_raw, small_store, tmp_path, monkeypatch):
    import flowbb.data.preprocess as pre

    real = pre.process_file
    victim = sorted(p.relative_to(small_raw).as_posix() for p in small_raw.rglob("*.pdb*"))[3]

    def dying(raw_dir, rel_path, params):
        if rel_path == victim:
            os._exit(137)  # what an out-of-memory kill looks like to the pool
        return real(raw_dir, rel_path, params)

    monkeypatch.setattr(pre, "process_file", dying)  # forked workers inherit the patch
    with pytest.raises(PreprocessError, match="worker process died") as info:
        preprocess(small_raw, tmp_path / "out", num_workers=2, progress=False, chunksize=1)
    assert victim in str(info.value)
    monkeypatch.setattr(pre, "process_file", real)
    preprocess(small_raw, tmp_path / "out", num_workers=2, progress=False)
    _same_store(tmp_path / "out", small_store)


def test_options_paths_and_empty_input_are_checked_first(tmp_path, ddg_files, copy_to):
    raw = copy_to(ddg_files[:1], tmp_path / "raw")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    only_text = tmp_path / "only_text"
    only_text.mkdir()
    (only_text / "notes.txt").write_text("no structures here")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    cases = [
        ({"raw_dir": raw, "out_dir": out, "num_workers": "two"}, "num_workers=two: expected a whole number >= 0"),
        ({"raw_dir": raw, "out_dir": out, "min_length": 0}, "min_length=0: expected a whole number >= 1"),
        ({"raw_dir": raw, "out_dir": out, "dssp_method": "mkdssp"}, "dssp_method=mkdssp: expected one of"),
        ({"raw_dir": raw, "out_dir": a_file}, f"out_dir '{a_file}' is a file, not a folder"),
        ({"raw_dir": raw, "out_dir": a_file / "sub"}, f"cannot be created: '{a_file}' is a file"),
        ({"raw_dir": raw, "out_dir": raw}, "out_dir is raw_dir"),
        ({"raw_dir": a_file, "out_dir": out}, "is not a folder"),
        ({"raw_dir": tmp_path / "empty", "out_dir": out}, "holds no structure files (it is empty)"),
        ({"raw_dir": only_text, "out_dir": out}, "holds no structure files (1 other file(s) ignored)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(PreprocessError) as info:
            preprocess(progress=False, **kwargs)
        assert message in str(info.value) and "\n" not in str(info.value), (kwargs, str(info.value))
        assert not out.exists() and sorted(p.name for p in raw.iterdir()) == [ddg_files[0].name]


def test_out_dir_of_another_raw_dir_is_refused_unless_overwrite(tmp_path, ddg_files, copy_to):
    raw_a = copy_to(ddg_files[:2], tmp_path / "a")
    raw_b = copy_to(ddg_files[2:3], tmp_path / "b")
    out = tmp_path / "out"
    preprocess(raw_a, out, num_workers=0, progress=False)
    before = _tree_digest(out)
    with pytest.raises(PreprocessError) as info:
        preprocess(raw_b, out, num_workers=0, progress=False)
    assert str(info.value) == (f"out_dir '{out}' holds a dataset made from raw_dir '{raw_a}', not '{raw_b}': "
                               "choose another out_dir, or pass overwrite=true to replace that dataset")
    assert _tree_digest(out) == before  # nothing written
    (out / "source.json").unlink()  # a folder made before source.json existed: files.csv tells
    with pytest.raises(PreprocessError, match="holds a dataset of 2 other file"):
        preprocess(raw_b, out, num_workers=0, progress=False)
    preprocess(raw_b, out, num_workers=0, progress=False, overwrite=True)
    assert set(pd.read_parquet(out / "metadata.parquet").source_file) == {ddg_files[2].name}
    again = preprocess(raw_b, out, num_workers=0, progress=False)  # its own raw_dir now: no overwrite needed
    assert again["processed_this_run"] == 0 and again["reused_from_earlier_runs"] == 1
    assert again["files_per_second"] == 0.0  # no file processed in this run


def test_ctrl_c_says_how_far_and_the_rerun_resumes(tmp_path, ddg_files, copy_to, monkeypatch):
    import flowbb.data.preprocess as pre

    raw = copy_to(ddg_files[:5], tmp_path / "raw")
    out = tmp_path / "out"
    real = pre.process_file
    calls = {"n": 0}

    def interrupted_on_third(raw_dir, rel_path, params):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(raw_dir, rel_path, params)

    monkeypatch.setattr(pre, "process_file", interrupted_on_third)
    with pytest.raises(PreprocessInterrupted) as info:
        preprocess(raw, out, num_workers=0, progress=False)
    assert (info.value.done, info.value.total) == (2, 5)
    assert str(info.value) == "interrupted: 2 of 5 files done; rerun the same command to resume"
    assert not (out / "metadata.parquet").exists()
    monkeypatch.setattr(pre, "process_file", real)
    summary = preprocess(raw, out, num_workers=0, progress=False)
    assert summary["processed_this_run"] == 3 and summary["reused_from_earlier_runs"] == 2
    assert 0 < summary["files_per_second"]
    preprocess(raw, tmp_path / "clean", num_workers=0, progress=False)
    _same_store(out, tmp_path / "clean")


@pytest.mark.slow
def test_cli_ctrl_c_exits_130_with_one_line(tmp_path, db55_files, ddg_files, copy_to):
    """SIGINT to the process group (what Ctrl-C in a terminal sends) during a 2-worker run. The child gets the default
    SIGINT action, as a terminal gives it: pytest started in the background of a non-interactive shell (``cmd &``)
    inherits SIGINT ignored, and so would the CLI (it then finished all files and exited 0)."""
    raw = copy_to(db55_files[:130] + ddg_files[:30], tmp_path / "raw")
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "preprocess.py"), f"raw_dir={raw}", f"out_dir={out}",
           "num_workers=2", "progress=false", "chunksize=1"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    deadline = time.time() + 300
    while time.time() < deadline and len(_finished_shards(out)) < 3:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    done = int(lines[0].split()[1])
    assert lines[0] == f"interrupted: {done} of 160 files done; rerun the same command to resume"
    assert done == len(_finished_shards(out)) and 3 <= done < 160
