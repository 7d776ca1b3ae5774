"""Write the Hub listing of one model: every published epoch, and which ones the study uses."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

import pandas as pd

df = pd.DataFrame(snakemake.params.listing, columns=["epoch", "file", "commit", "blob"])
df["selected"] = df["epoch"].isin(snakemake.params.selected)
df.sort_values("epoch").to_csv(snakemake.output[0], sep="\t", index=False)
print(f"{len(df)} epochs published, {int(df['selected'].sum())} selected")
