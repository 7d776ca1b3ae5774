"""checkpoint_budget: every job that reads this checkpoint is done; remove it from the HF cache if ours."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn import budget

budget.release(snakemake.params.job, snakemake.params.owner, snakemake.output[0])
