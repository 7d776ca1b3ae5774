"""checkpoint_budget: every job that reads the run's checkpoints is done; empty its store."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.hub.checkpoints import release

release(snakemake.params.store, snakemake.output[0])
