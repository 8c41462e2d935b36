"""Rigid frames, SO(3) maps, backbone atoms from frames, Kabsch/RMSD, geometry checks.

Modules: ``rigid`` (frames), ``so3`` (exp/log, geodesics, quaternions, uniform/IGSO(3) sampling),
``backbone`` (ideal N, CA, C, O from frames + psi, dihedrals), ``align`` (Kabsch, RMSD),
``checks`` (Rg, CA-CA bonds, clashes), ``neighbors`` (chunked kNN).
"""

from flowbb.geometry import align, backbone, checks, rigid, so3

__all__ = ["align", "backbone", "checks", "rigid", "so3"]
