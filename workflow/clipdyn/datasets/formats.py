"""Imports every adapter module so that each registers its format."""
from . import webdataset, image_folder  # noqa: F401
