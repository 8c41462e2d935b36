"""Train a flowbb model: ``python train.py experiment=foldflow_flash`` (Hydra; configs in ``configs/``).

Errors the user can fix (:class:`flowbb.errors.UserError`: a mistyped key, an unknown option, a missing dataset, a run
folder of another model, ``trainer=gpu`` without CUDA, ...) end with one line on stderr and exit code 2; anything else
is a bug and shows its traceback.
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from flowbb.errors import UserError, report_user_error
    from flowbb.training import train

    try:
        train(cfg)
    except UserError as exc:
        sys.exit(report_user_error(exc))


if __name__ == "__main__":
    from flowbb.cli import exit_on_bad_command_line

    exit_on_bad_command_line("train")
    main()
