"""flowbb: SE(3) flow matching for protein backbones with FlashIPA."""

__version__ = "0.1.0"
