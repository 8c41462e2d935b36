"""Shards of the preprocessing pipeline and their consolidation into a processed store.

One shard per source file, ``out_dir/shards/<h[:2]>/<h>.npz`` with ``h = sha1(relative path)``: the file's records
(JSON, ``meta``) and its chains' per-residue arrays, written through a temporary file and an atomic rename.
:func:`consolidate` reads the shards of the current files in source-path order and writes the store
(``flowbb.data.store``: arrays, ``metadata.parquet`` last), ``files.csv`` and the counts of the summary.
Used by :mod:`flowbb.data.preprocess`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from flowbb.data import store as store_mod
from flowbb.data.preprocess_checks import PreprocessError

IGNORED = "ignored (not a structure file name)"


def shard_path(out_dir: Path, rel_path: str) -> Path:
    """Shard file of one source file: ``shards/<h[:2]>/<h>.npz``, h = sha1 of its relative path."""
    digest = hashlib.sha1(rel_path.encode("utf-8")).hexdigest()
    return out_dir / "shards" / digest[:2] / f"{digest}.npz"


def concat_arrays(parts: list[dict[str, np.ndarray]], molecule: str = "protein") -> dict[str, np.ndarray]:
    """The per-chain arrays of one file and molecule type concatenated along residues (empty arrays of the store's
    dtypes when none), keyed by the store's file stems (``atoms``, ..., ``rna_atoms``, ...)."""
    layout = store_mod.LAYOUTS[molecule]
    out = {}
    for name, (dtype, shape) in layout.arrays.items():
        value = np.concatenate([p[name] for p in parts]) if parts else np.zeros((0, *shape), dtype=dtype)
        out[layout.prefix + name] = value
    return out


def write_shard(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Atomic: write a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    payload = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    with open(tmp, "wb") as handle:
        np.savez(handle, meta=payload, **arrays)
    os.replace(tmp, path)


def read_shard_meta(path: Path) -> dict | None:
    """The ``meta`` record of a shard; ``None`` when the shard is missing or unreadable."""
    try:
        with np.load(path) as data:
            return json.loads(bytes(data["meta"]).decode("utf-8"))
    except Exception:  # noqa: BLE001 -- unreadable shard: process the file again
        return None


def consolidate(out_dir: Path, structure_files: list[str], ignored_files: list[str]) -> dict:
    """Write the store from the shards of ``structure_files`` (sorted by source path; chains in file order).

    Returns:
        summary dict (counts by status/reason).
    """
    import pandas as pd

    metas = []
    for rel_path in structure_files:
        meta = read_shard_meta(shard_path(out_dir, rel_path))
        if meta is None:
            raise PreprocessError(f"shard of {rel_path} is missing or unreadable; re-run preprocessing")
        metas.append(meta)
    records = []
    offsets = dict.fromkeys(store_mod.LAYOUTS, 0)  # each molecule type has its own arrays
    for meta in metas:
        for chain in meta["chains"]:
            molecule = chain.get("molecule", store_mod.DEFAULT_MOLECULE)
            records.append({**chain, "molecule": molecule, "row": len(records), "offset": offsets[molecule]})
            offsets[molecule] += chain["length"]
    for molecule, layout in store_mod.LAYOUTS.items():
        writer = store_mod.ArrayWriter(out_dir, offsets[molecule], molecule)
        position = 0
        for rel_path, meta in zip(structure_files, metas):
            if not any(c.get("molecule", store_mod.DEFAULT_MOLECULE) == molecule for c in meta["chains"]):
                continue
            with np.load(shard_path(out_dir, rel_path)) as data:
                arrays = {name: data[layout.prefix + name] for name in layout.arrays}
            writer.write(position, arrays)
            position += len(arrays["atoms"])
        writer.commit()
    offset = sum(offsets.values())

    columns = store_mod.METADATA_COLUMNS
    frame = pd.DataFrame.from_records(records, columns=[c.name for c in columns])
    frame = frame.astype({c.name: c.dtype for c in columns if c.dtype != "str"})  # "str": pandas' inferred dtype
    tmp = out_dir / f".{store_mod.METADATA}.tmp"
    frame.to_parquet(tmp, index=False)

    files_tmp = out_dir / ".files.csv.tmp"
    with open(files_tmp, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["source_file", "status", "reason", "detail", "chains_kept", "short_chains"])
        rows = [
            [m["source_file"], m["status"], m["reason"], m["detail"], len(m["chains"]), m["num_short_chains"]]
            for m in metas
        ] + [[f, "ignored", IGNORED, "", 0, 0] for f in ignored_files]
        out.writerows(sorted(rows))
    os.replace(files_tmp, out_dir / "files.csv")
    os.replace(tmp, out_dir / store_mod.METADATA)

    reasons = Counter(m["reason"] for m in metas if m["status"] == "skipped")
    protein = (frame["molecule"] == "protein").to_numpy()
    lengths = frame["modeled_length"].to_numpy()[protein]
    return {
        "files_total": len(structure_files) + len(ignored_files),
        "structure_files": len(structure_files),
        "files_ignored": len(ignored_files),
        "files_with_chains": sum(1 for m in metas if m["chains"]),
        "files_skipped": sum(reasons.values()),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "chains_kept": len(frame),
        "chains_by_molecule": {m: int((frame["molecule"] == m).sum()) for m in store_mod.LAYOUTS},
        "chains_60_512": int(((lengths >= 60) & (lengths <= 512)).sum()),
        "short_chains_dropped": sum(m["num_short_chains"] for m in metas),
        "residues": int(offset),
    }
