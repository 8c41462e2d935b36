"""Structure files in and out: PDB / mmCIF / BinaryCIF reading (biotite) and backbone PDB writing.

- :mod:`~flowbb.data.structure_io.files`: file formats by name, decompression, text decoding, and
  :class:`~flowbb.data.structure_io.files.StructureReadError` with its stable reasons (shared by every reader);
- :mod:`~flowbb.data.structure_io.headers`: header facts (resolution, method, date, PDB id, oligomeric state);
- :mod:`~flowbb.data.structure_io.backbone_filter`: text-level pre-filters that hand biotite only the backbone
  atoms of the first model (the speed of preprocessing);
- :mod:`~flowbb.data.structure_io.read`: protein chains (:func:`~flowbb.data.structure_io.read.read_chains`);
  RNA chains are read by :mod:`flowbb.data.nucleic` on the same file handling;
- :mod:`~flowbb.data.structure_io.write`: backbone PDB files of any molecule type
  (:func:`~flowbb.data.structure_io.write.write_backbone_pdb`).

Nothing is imported here: import from the module that holds the name.
"""
