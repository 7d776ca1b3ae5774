"""Corrupted pixels of a derived dataset (ImageNet-C style), deterministic per image and severity:
each row of the derived manifest is its source image corrupted at its severity, in ImageNet-C's
geometry (or the model's), then put through the model's preprocessing."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

import pandas as pd

from clipdyn.config.specs import Preprocess
from clipdyn.data.pixels import build_pixel_cache
from clipdyn.io import read_meta

images = pd.read_parquet(snakemake.input.manifest)
pp = Preprocess.from_id(snakemake.wildcards.preprocess)
corruption = dict(snakemake.params.corruption)
meta = dict(read_meta(snakemake.input.manifest), preprocess=pp.id, **corruption)
summary = build_pixel_cache(images, pp, snakemake.output.pixels, snakemake.output.index,
                            on_bad_image=snakemake.params.on_bad_image, workers=snakemake.threads, meta=meta,
                            corruption=corruption)
print(summary)
