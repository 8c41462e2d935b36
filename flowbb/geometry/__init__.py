"""Rigid frames, SO(3) maps, backbone atoms from frames, Kabsch/RMSD, geometry checks."""
