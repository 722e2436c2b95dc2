"""QuiltNet training: contrastive CLIP fine-tuning on the transformers Trainer.

- ``loss.ClipLoss``: symmetric InfoNCE (or SigLIP's sigmoid loss) with global negatives across processes;
- ``arguments.ContrastiveTrainingArguments`` and ``trainer.ContrastiveTrainer``;
- ``data``: pair loading, held-out splits, on-the-fly image transforms and the collator;
- ``modeling``: CLIP-like checkpoints or a dual encoder from any vision and text encoder;
- ``card``: the model card; ``train``: the ``quilt train`` command (``TrainConfig``, ``run_train``).

Submodules are imported on use, so that ``import quilt_hf.training`` stays light.
"""
