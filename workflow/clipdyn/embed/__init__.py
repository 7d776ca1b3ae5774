"""Embed stage: model loading and the encoding loop, the zero-shot classifier, saliency maps,
device claims, the persistent worker."""

from pathlib import Path

#: the open_clip JSON model configs clipdyn ships (the demo's and the tests' tiny architectures)
MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
