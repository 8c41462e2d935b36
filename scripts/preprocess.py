"""Preprocess a folder of structure files into a flowbb dataset.

    python scripts/preprocess.py raw_dir=DIR out_dir=DIR num_workers=2 [overwrite=true]

Logic lives in :mod:`flowbb.data.preprocess`; this is the Hydra entry point. Exit codes: 0 done, 2 a bad option,
path or input folder (one line on stderr), 130 interrupted with Ctrl-C (rerun the same command to resume).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="preprocess")
def main(cfg: DictConfig) -> None:
    from flowbb.data.preprocess import PreprocessInterrupted, format_summary, preprocess
    from flowbb.errors import EXIT_INTERRUPTED, UserError, report_user_error

    try:
        summary = preprocess(
            raw_dir=cfg.raw_dir,
            out_dir=cfg.out_dir,
            num_workers=cfg.num_workers,
            min_length=cfg.min_length,
            dssp_method=cfg.dssp_method,
            progress=cfg.progress,
            chunksize=cfg.chunksize,
            overwrite=cfg.get("overwrite", False),
        )
    except UserError as exc:
        sys.exit(report_user_error(exc))
    except PreprocessInterrupted as exc:
        print(str(exc), file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    print(format_summary(summary))
    print(
        f"wrote {Path(cfg.out_dir) / 'metadata.parquet'}; per-file status in {Path(cfg.out_dir) / 'files.csv'}, "
        f"log in {Path(cfg.out_dir) / 'preprocess.log'}"
    )


if __name__ == "__main__":
    from flowbb.cli import exit_on_bad_command_line

    exit_on_bad_command_line("preprocess")
    main()
