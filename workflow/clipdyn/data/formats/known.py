"""Imports every adapter module so that each registers its format."""
from . import (  # noqa: F401
    cue_conflict,
    image_folder,
    imagenet_c,
    iqa,
    nights,
    saliency,
    webdataset,
)
