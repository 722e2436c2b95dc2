"""Fine-tune a CLIP model on your own histopathology image-text pairs (the QuiltNet recipe).

Your pairs: a folder of images plus a CSV with ``file_name,caption`` columns (the ``imagefolder`` layout), or
any ``datasets`` dataset with an image column and a text column. Run:

    python examples/finetune_on_your_pairs.py --images my_pairs/ --output outputs/my-quiltnet

The same from the command line, on a saved or published dataset:

    quilt train --dataset my_pairs_dataset/ --model openai/clip-vit-base-patch32 --output outputs/my-quiltnet
    accelerate launch -m quilt_hf.cli train --dataset ... --batch_size 256   # several GPUs: global negatives
"""

from __future__ import annotations

import argparse

from datasets import load_dataset
from transformers import pipeline

from quilt_hf.training.arguments import ContrastiveTrainingArguments
from quilt_hf.training.data import train_eval_split
from quilt_hf.training.modeling import load_contrastive_model
from quilt_hf.training.trainer import ContrastiveTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="imagefolder with metadata.csv (file_name, caption)")
    parser.add_argument("--model", default=None, help="CLIP checkpoint; default openai/clip-vit-base-patch32")
    parser.add_argument("--output", default="outputs/my-quiltnet")
    parser.add_argument("--epochs", type=float, default=5)
    options = parser.parse_args()

    # 1. Pairs: images are decoded lazily, batch by batch, by the trainer's collator.
    pairs = load_dataset("imagefolder", data_dir=options.images, split="train")
    train, held_out = train_eval_split(pairs, eval_fraction=0.1)

    # 2. Model and processor (a Hub name, a folder, or the offline demo base).
    model, processor = load_contrastive_model(options.model)

    # 3. Train: symmetric InfoNCE with global negatives, retrieval recall@1/5/10 at every evaluation.
    args = ContrastiveTrainingArguments(
        output_dir=options.output,
        num_train_epochs=options.epochs,
        per_device_train_batch_size=64,
        learning_rate=1e-5,
        warmup_steps=0.05,
        lr_scheduler_type="cosine",
        image_augmentation="histology",  # random crops, flips and 90-degree rotations
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        bf16=False,  # True on GPUs that support it
    )
    trainer = ContrastiveTrainer(
        model, args, processing_class=processor, train_dataset=train, eval_dataset=held_out,
        card_info={"base_model": options.model, "dataset_name": options.images},
    )
    trainer.train()
    print(trainer.evaluate())
    trainer.save_model(options.output)  # weights, processor and model card

    # 4. Use it. A CLIPModel folder loads by path; the pipeline has no auto class for a dual encoder
    # (the offline demo base), so that one is passed as loaded parts.
    if type(model).__name__ == "CLIPModel":
        classifier = pipeline("zero-shot-image-classification", model=options.output)
    else:
        classifier = pipeline("zero-shot-image-classification", model=trainer.model, tokenizer=processor.tokenizer,
                              image_processor=processor.image_processor)
    print(classifier(held_out[0]["image"], candidate_labels=["tumour", "normal tissue"]))


if __name__ == "__main__":
    main()
