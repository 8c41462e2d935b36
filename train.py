"""Train a flowbb model: ``python train.py experiment=foldflow_flash`` (Hydra; configs in ``configs/``)."""

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from flowbb.training import train

    train(cfg)


if __name__ == "__main__":
    main()
