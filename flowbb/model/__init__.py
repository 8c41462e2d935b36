"""flowbb.model: reference IPA, FlashIPA, attention backends, edge embedders, the FlowModel trunk.

Modules: ``ipa`` (InvariantPointAttention, IPAConfig), ``flash_ipa`` (FlashIPA, FlashIPAConfig), ``attention``
(SDPA / flash-attn backends), ``edge_embed`` (dense and factorized pair features + transitions), ``features``
(sinusoidal / RBF encodings), ``flow_model`` (FlowModel, FlowModelConfig).
"""

from flowbb.model.flash_ipa import FlashIPA, FlashIPAConfig
from flowbb.model.flow_model import FlowModel, FlowModelConfig
from flowbb.model.ipa import InvariantPointAttention, IPAConfig

__all__ = [
    "FlashIPA",
    "FlashIPAConfig",
    "FlowModel",
    "FlowModelConfig",
    "IPAConfig",
    "InvariantPointAttention",
]
