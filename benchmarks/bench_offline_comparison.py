"""Offline quality comparison (issue 6): all-MiniLM-L6-v2 against the lexical TF-IDF baseline, measured in the
same run on the shipped bilingual retrieval set (22 queries, 36 documents, Chinese and English).

Prints the side-by-side table and the per-slice nDCG@10 (all queries; relevant documents in the query's own
language; relevant documents in the other language), optionally saves the comparison plots, and ends with

    RESULT minilm_ndcg10=… lexical_ndcg10=… minilm_xling_ndcg10=… lexical_xling_ndcg10=…
           minilm_mrr=… lexical_mrr=…   (on one line)

    python benchmarks/bench_offline_comparison.py [--plots DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from tke_playbook import plots
from tke_playbook.embed.lexical import LexicalEmbedder
from tke_playbook.embed.local import LocalEmbedder
from tke_playbook.evaluate.compare import compare_embedders
from tke_playbook.evaluate.datasets import load_bilingual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plots", type=Path, help="folder to save the comparison PNGs in")
    args = parser.parse_args()

    dataset = load_bilingual()
    print("dataset:", dataset.summary())
    comparison = compare_embedders(LocalEmbedder(), LexicalEmbedder(), dataset)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3):
        print(comparison.table)
        for result in (comparison.a, comparison.b):
            print(f"\n{result.name} by slice:")
            print(result.slices)
    if args.plots:
        args.plots.mkdir(parents=True, exist_ok=True)
        plots.plot_comparison_panel(comparison).savefig(args.plots / "comparison_panel.png", dpi=110)
        plots.plot_comparison_heatmaps(comparison).savefig(args.plots / "heatmaps.png", dpi=110)
        plots.plot_comparison_pca(comparison).savefig(args.plots / "pca.png", dpi=110)
        print(f"plots saved in {args.plots}")

    a, b = comparison.a.slices, comparison.b.slices
    print(f"RESULT minilm_ndcg10={a.loc['all', 'ndcg@10']:.3f} lexical_ndcg10={b.loc['all', 'ndcg@10']:.3f} "
          f"minilm_xling_ndcg10={a.loc['cross-lingual', 'ndcg@10']:.3f} "
          f"lexical_xling_ndcg10={b.loc['cross-lingual', 'ndcg@10']:.3f} "
          f"minilm_mrr={a.loc['all', 'mrr']:.3f} lexical_mrr={b.loc['all', 'mrr']:.3f}")


if __name__ == "__main__":
    main()
