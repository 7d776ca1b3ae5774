"""Decode, resize and crop every image of a dataset once, for one preprocessing."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

import pandas as pd

from clipdyn.config.specs import Preprocess
from clipdyn.data.pixels import build_pixel_cache
from clipdyn.io import read_meta

images = pd.read_parquet(snakemake.input.manifest)
pp = Preprocess.from_id(snakemake.wildcards.preprocess)
meta = dict(read_meta(snakemake.input.manifest), preprocess=pp.id)
summary = build_pixel_cache(images, pp, snakemake.output.pixels, snakemake.output.index,
                            on_bad_image=snakemake.params.on_bad_image, workers=snakemake.threads, meta=meta)
print(summary)
