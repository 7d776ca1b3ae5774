"""clipdyn: how CLIP models change during training, from cached embeddings.

The library behind the Snakemake workflow. Every metric is a plain function of
arrays (``clipdyn.metrics``); the workflow only wires files to it.
"""

__version__ = "0.1.0"
