"""The stages of one video, one home each; the Prefect task in ``tasks/<stage>.py`` calls the function of the same
name here, and ``flows/process_video.py`` wires them.

- prepare (`stages.prepare`): probe, plan, resolve checkpoints → `VideoJob`
- finetune (`stages.finetune`, optional): train the detector on the first frames → `FinetuneRecord`
- extract (`stages.extract`): one subsequence's frames → `ExtractResult`
- segment (`stages.segment`, driver in `stages.segment.driver`): one subsequence → `SegmentResult`
- stitch (`stages.stitch`: `parts`, `corrections`, `events`, `restitch`): tracks over the video → `StitchResult`
- render (`stages.render`): the annotated video, in pieces → `RenderPieceResult`, `RenderResult`
- finalize (`stages.finalize`): manifest, report, ``_SUCCESS`` last → the output folder

Stages exchange a small `VideoJob` (paths, ids, the plan) and the typed records of `sam2flow.results`, never arrays
or models. Importing this package imports none of the stages.
"""
