"""QuiltNet training: contrastive CLIP fine-tuning on the transformers Trainer."""
