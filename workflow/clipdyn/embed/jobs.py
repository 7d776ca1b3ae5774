"""The embed stage's jobs, as the rules run them: one function per rule, called from its ``run:``
block in a thread of the snakemake process (no interpreter to start and nothing to import per job;
the default profile sets ``force-use-threads``).

Each opens its checkpoint by record (:func:`clipdyn.hub.checkpoints.open_checkpoint`) and hands the
work to the persistent worker (:mod:`clipdyn.embed.worker`), or, with the worker off, to a process
of its own; the step's output goes to the job's log. What a job computes comes in ``params``;
``how`` (the config's ``embedding:`` settings) says only how it runs: its worker mode. A ``run:``
block runs in snakemake's own Python, so under ``--sdm conda`` the worker is started with the rule's
conda environment's interpreter (``conda_env``), where torch and open_clip are.
"""

from __future__ import annotations

import os
from typing import Optional

from ..hub.checkpoints import open_checkpoint
from .worker import run_step


def python_of(conda_env: Optional[str]) -> Optional[str]:
    """The interpreter of a rule's conda environment (``--sdm conda``), or None (snakemake's own)."""
    return os.path.join(str(conda_env), "bin", "python") if conda_env else None


def embed_images_job(*, input, output: str, params, threads: int, log: str, how, conda_env=None) -> None:
    """``embed_images``: one dataset's pixel cache through one checkpoint, to Parquet."""
    j = params.job
    open(log, "w").close()  # this run's log only
    with open_checkpoint(input.checkpoint) as checkpoint:
        run_step("clipdyn.embed.step:embed_images",
                 dict(checkpoint=str(checkpoint), pixels=input.pixels, pixel_index=input.pixel_index, out=output,
                      arch=j["arch"], allow_pickle=j["allow_pickle"], spatial=j["spatial"],
                      batch_size=j["batch_size"],
                      **({"saliency_map": j["saliency_map"]} if "saliency_map" in j else {}),
                      precision=params.precision, compile=params.compile, model_configs=list(params.model_configs),
                      provenance=j["provenance"], threads=threads),
                 log=log, mode=how.worker, idle_s=how.worker_idle_s, isolated=True, python=python_of(conda_env))


def text_classifier_job(*, input, output: str, params, threads: int, log: str, how, conda_env=None) -> None:
    """``text_classifier``: one class set's zero-shot classifier from one checkpoint, to Parquet."""
    j = params.job
    open(log, "w").close()  # this run's log only
    with open_checkpoint(input.checkpoint) as checkpoint:
        run_step("clipdyn.embed.classifier:text_classifier",
                 dict(checkpoint=str(checkpoint), manifest=input.get("manifest"), out=output, arch=j["arch"],
                      allow_pickle=j["allow_pickle"], classset=j["classset"],
                      model_configs=list(params.model_configs), provenance=j["provenance"], threads=threads,
                      precision=params.precision),
                 log=log, mode=how.worker, idle_s=how.worker_idle_s, isolated=True, python=python_of(conda_env))
