"""Zero-shot classification and image-text retrieval with a QuiltNet-style model.

Works with any CLIP-like model by Hub name or folder: a `quilt train` output, `openai/clip-vit-base-patch32`,
a `VisionTextDualEncoderModel`, or `open_clip:hf-hub:ORG/NAME` with the open-clip extra. Run:

    python examples/zero_shot_and_retrieval.py --model outputs/demo/model --images demo_corpus_frames/*.png

For a `CLIPModel` checkpoint the plain transformers pipeline works too:

    from transformers import pipeline
    classify = pipeline("zero-shot-image-classification", model="outputs/my-quiltnet")
    classify("patch.png", candidate_labels=["adenocarcinoma", "benign colonic mucosa"],
             hypothesis_template="a histopathology image of {}.")
"""

from __future__ import annotations

import argparse

import torch
from PIL import Image

from quilt_hf.evaluation.adapters import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Hub name or folder of a CLIP-like model")
    parser.add_argument("--images", nargs="+", required=True, help="image files")
    parser.add_argument(
        "--labels",
        nargs="+",
        default=["adenocarcinoma", "squamous epithelium", "immunohistochemistry stained glands", "background"],
    )
    parser.add_argument("--template", default="a histopathology image of {}.")
    args = parser.parse_args()

    model = load_model(args.model)
    images = [Image.open(path).convert("RGB") for path in args.images]
    with torch.no_grad():
        image_features = torch.nn.functional.normalize(model.encode_images(images), dim=-1)
        label_features = torch.nn.functional.normalize(
            model.encode_texts([args.template.format(label) for label in args.labels]), dim=-1
        )
    probabilities = (100 * image_features @ label_features.T).softmax(dim=-1)
    for path, row in zip(args.images, probabilities):
        best = row.argsort(descending=True)[:3]
        print(path, ", ".join(f"{args.labels[i]} {row[i]:.2f}" for i in best))
    # Retrieval: which image does each label describe best?
    for label, column in zip(args.labels, probabilities.T):
        print(f"{label!r} -> {args.images[int(column.argmax())]}")


if __name__ == "__main__":
    main()
