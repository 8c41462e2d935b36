"""flowbb.data: structures in, training batches out.

- :mod:`~flowbb.data.structure_io`: read PDB/mmCIF/BinaryCIF chains (biotite), write backbone PDB files
- :mod:`~flowbb.data.secondary_structure`: 3-state DSSP and secondary-structure fractions
- :mod:`~flowbb.data.preprocess`: folder of structures -> processed store (parallel, resumable)
- :mod:`~flowbb.data.store`: ``metadata.parquet`` + memory-mapped coordinate arrays
- :mod:`~flowbb.data.filters`, :mod:`~flowbb.data.clusters`: training-set selection
- :mod:`~flowbb.data.dataset`, :mod:`~flowbb.data.batcher`, :mod:`~flowbb.data.datamodule`: torch side
- :mod:`~flowbb.data.demo`: the embedded demo set fetched from registry packages

Nothing is imported here, so that preprocessing workers stay free of torch.
"""
