"""flowbb.data: structures in, training batches out.

- :mod:`~flowbb.data.structure_io`: read PDB/mmCIF/BinaryCIF chains (biotite; ``read``, ``files``, ``headers``,
  ``backbone_filter``), write backbone PDB files (``write``); RNA chains: :mod:`~flowbb.data.nucleic`
- :mod:`~flowbb.data.secondary_structure`: 3-state DSSP and secondary-structure fractions
- :mod:`~flowbb.data.preprocess`: folder of structures -> processed store (parallel, resumable)
- :mod:`~flowbb.data.store`: ``metadata.parquet`` + memory-mapped coordinate arrays
- :mod:`~flowbb.data.filters`, :mod:`~flowbb.data.clusters`: training-set selection
- :mod:`~flowbb.data.dataset`, :mod:`~flowbb.data.batcher`, :mod:`~flowbb.data.datamodule`: torch side
- :mod:`~flowbb.data.demo`: the embedded demo set fetched from registry packages

Nothing is imported here, so that importing one module loads only what it needs (preprocessing loads torch only
for the radius of gyration of :mod:`flowbb.geometry.checks`).
"""
