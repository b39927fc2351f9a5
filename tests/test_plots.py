"""Plots on small synthetic data: returned types, titles and labels, counts of images, annotations and patches,
the CJK-font fallback, and PNGs that really render."""

import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tke_playbook import plots
from tke_playbook.embed.lexical import LexicalEmbedder
from tke_playbook.errors import InvalidSpecError
from tke_playbook.evaluate import compare
from tke_playbook.evaluate.datasets import load_bilingual
from tke_playbook.plots import _style

LABELS = ["Kubernetes pods", "容器重启", "quicksort in Python", "用Python实现快速排序算法", "steamed fish"]
TOPICS = ["cloud", "cloud", "programming", "programming", "cooking"]


def _sim(n=5, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors @ vectors.T


def _records(levels=(1, 4), per_level=40, fail_every=0, open_loop=False):
    rng = np.random.default_rng(1)
    rows = []
    for level in levels:
        for i in range(per_level):
            ok = not (fail_every and i % fail_every == 0)
            length = int(rng.choice([16, 128, 512]))
            rows.append({"start_s": i * 0.01, "latency_s": 0.004 + length * 2e-5 * level + rng.exponential(0.002),
                         "status": 200 if ok else 503, "ok": ok, "prompt_tokens": length, "input_tokens": length,
                         "concurrency": np.nan if open_loop else level, "rate": level if open_loop else np.nan,
                         "error": None if ok else "HTTP 503"})
    return pd.DataFrame(rows)


def _summary(records, column="concurrency"):
    rows = []
    for level, group in records.groupby(column):
        ok = group[group["ok"]]
        rows.append({column: level, "requests": len(group), "errors": int((~group["ok"]).sum()),
                     "error_rate": float((~group["ok"]).mean()), "req_per_s": len(ok) / 2.0,
                     "tokens_per_s": ok["prompt_tokens"].sum() / 2.0,
                     "latency_mean_ms": ok["latency_s"].mean() * 1000,
                     "p50_ms": ok["latency_s"].quantile(0.5) * 1000, "p90_ms": ok["latency_s"].quantile(0.9) * 1000,
                     "p99_ms": ok["latency_s"].quantile(0.99) * 1000})
    return pd.DataFrame(rows)


@pytest.fixture
def no_cjk_font(monkeypatch):
    monkeypatch.setattr(_style, "cjk_font", lambda: None)


def _texts(fig):
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontfamily"))]


def _by_gid(ax, gid, kind):
    return [a for a in getattr(ax, kind) if a.get_gid() == gid]


# --- heatmaps ----------------------------------------------------------------------------------------------


def test_heatmap_has_an_image_annotations_and_topic_blocks(tmp_path, no_cjk_font):
    fig = plots.plot_similarity_heatmap(_sim(), LABELS, TOPICS, annotate=True, title="MiniLM")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.images) == 1 and len(fig.axes) == 2  # heatmap + colour bar
    assert len(_by_gid(ax, "annotation", "texts")) == 25
    assert len(_by_gid(ax, "topic-block", "patches")) == 3
    assert ax.get_title() == "MiniLM"
    assert fig.axes[1].get_ylabel() == "cosine similarity"
    fig.savefig(tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 10_000


def test_heatmap_annotations_can_be_switched_off():
    fig = plots.plot_similarity_heatmap(_sim(), LABELS, annotate=False)
    assert not _by_gid(fig.axes[0], "annotation", "texts")
    assert not _by_gid(fig.axes[0], "topic-block", "patches")
    big = plots.plot_similarity_heatmap(_sim(30), [f"s{i}" for i in range(30)], annotate="auto")
    assert not _by_gid(big.axes[0], "annotation", "texts")


def test_heatmap_draws_on_a_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.plot_similarity_heatmap(_sim(), LABELS, TOPICS, ax=ax) is ax


def test_without_a_cjk_font_chinese_labels_fall_back_and_nothing_warns(tmp_path, no_cjk_font):
    fallbacks = [f"id-{i}" for i in range(5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph would raise here
        fig = plots.plot_similarity_heatmap(_sim(), LABELS, TOPICS, title="相似度 similarity",
                                            label_fallbacks=fallbacks)
        fig.savefig(tmp_path / "fallback.png")
    ylabels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ylabels[1] == "2  id-1" and ylabels[0] == "1  Kubernetes pods"
    assert not any(_style.has_cjk(text) for text in _texts(fig))
    assert fig.axes[0].get_title() == "[zh] similarity"


def test_with_a_cjk_font_chinese_labels_are_kept(monkeypatch):
    monkeypatch.setattr(_style, "cjk_font", lambda: "DejaVu Sans")  # stands in for an installed CJK family
    fig = plots.plot_similarity_heatmap(_sim(), LABELS, TOPICS)
    label = fig.axes[0].get_yticklabels()[3]
    assert label.get_text() == "4  用Python实现快速排序算法"
    assert label.get_fontfamily()[0] == "DejaVu Sans"


def test_safe_labels_strip_chinese_without_fallbacks(no_cjk_font):
    assert plots.safe_labels(["GPU 节点", "plain"]) == ["GPU [zh]", "plain"]


def test_side_by_side_heatmaps_share_one_colour_bar(tmp_path, no_cjk_font):
    fig = plots.plot_heatmaps_side_by_side(_sim(seed=1), _sim(seed=2), LABELS, TOPICS, ("MiniLM", "TF-IDF"))
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 2 and len(fig.axes) == 3
    assert [ax.get_title() for ax in heatmaps] == ["MiniLM", "TF-IDF"]
    assert "MiniLM vs TF-IDF" in fig.get_suptitle()
    clims = {ax.images[0].get_clim() for ax in heatmaps}
    assert len(clims) == 1
    fig.savefig(tmp_path / "side.png")


@pytest.mark.parametrize("call, message", [
    pytest.param(lambda: plots.plot_similarity_heatmap(np.zeros((2, 3)), ["a", "b"]), "square", id="not-square"),
    pytest.param(lambda: plots.plot_similarity_heatmap(_sim(), LABELS[:2]), "2 labels", id="label-count"),
    pytest.param(lambda: plots.plot_similarity_heatmap(_sim(), LABELS, TOPICS[:1]), "1 topics", id="topic-count"),
    pytest.param(lambda: plots.plot_heatmaps_side_by_side(_sim(), _sim(), LABELS, names=("a",)), "two model",
                 id="one-name"),
])
def test_heatmap_input_errors(call, message):
    with pytest.raises(InvalidSpecError, match=message):
        call()


# --- embeddings ----------------------------------------------------------------------------------------------


def test_pca_scatter_coloured_by_topic_with_language_markers():
    points = np.random.default_rng(0).normal(size=(5, 2))
    fig = plots.plot_pca(points, TOPICS, langs=["en", "zh", "en", "zh", "en"], labels=LABELS)
    ax = fig.axes[0]
    assert len(ax.collections) == 5  # (topic, language) groups: cloud en/zh, programming en/zh, cooking en
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["cloud", "programming", "cooking", "English", "Chinese"]
    assert ax.get_xlabel() == "PC 1" and ax.get_ylabel() == "PC 2"


def test_pca_refuses_unprojected_vectors():
    with pytest.raises(InvalidSpecError, match="pca_2d"):
        plots.plot_pca(np.zeros((5, 3)), TOPICS)


def test_score_distributions_split_relevant_pairs_by_language():
    frame = pd.DataFrame({"score": [0.9, 0.7, 0.2, 0.1, 0.3], "relevant": [True, True, False, False, False],
                          "cross_lingual": [False, True, False, True, False]})
    fig = plots.plot_score_distributions(frame, bins=10)
    ax = fig.axes[0]
    assert len(ax.patches) == 30  # three histograms of ten bars
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[1].startswith("relevant, cross-lingual (n=1")
    plain = plots.plot_score_distributions(frame.drop(columns="cross_lingual"), bins=10)
    assert len(plain.axes[0].patches) == 20


# --- load tests --------------------------------------------------------------------------------------------


def test_latency_histogram_marks_percentiles_and_counts_failures():
    records = _records(fail_every=10)
    fig = plots.plot_latency_histogram(records, bins=20, hardware="a test CPU")
    top, bottom = fig.axes
    assert len(top.patches) == 20 and len(top.lines) == 3
    assert top.get_title(loc="left") == "1 in flight (36 ok, 4 failed)"
    assert bottom.get_title(loc="left") == "4 in flight (36 ok, 4 failed)"
    assert bottom.get_xlabel() == "latency (ms)"
    assert fig.get_suptitle() == "Request latency\nmeasured on a test CPU"


def _two_levels() -> pd.DataFrame:
    """Issue 20 item 9's run: one request in flight answers in ~50 ms, four in ~180 ms (two separate peaks)."""
    rng = np.random.default_rng(3)
    rows = []
    for level, centre in ((1, 0.05), (4, 0.18)):
        for i, latency in enumerate(rng.normal(centre, 0.008, 20)):
            rows.append({"start_s": i * 0.1, "latency_s": latency, "status": 200, "ok": True, "prompt_tokens": 12,
                         "input_tokens": 12, "concurrency": level, "rate": np.nan, "error": None})
    return pd.DataFrame(rows)


def _drawn_marks(ax) -> list[float]:
    return [float(line.get_xdata()[0]) for line in ax.lines]


def test_latency_histogram_draws_each_levels_own_percentiles_from_the_table():
    """The marks are the summary table's numbers (loadgen computes them once): pooled p50/p99 fell between the
    two peaks and matched neither row."""
    from tke_playbook.loadgen import summarize

    records = _two_levels()
    table = summarize(records)
    fig = plots.plot_latency_histogram(records, summary=table)
    assert len(fig.axes) == 2
    for ax, (_, row) in zip(fig.axes, table.iterrows()):
        assert _drawn_marks(ax) == [row["p50_ms"], row["p90_ms"], row["p99_ms"]]
        assert [t.get_text() for t in ax.get_legend().get_texts()][0] == f"p50 = {row['p50_ms']:.1f} ms"
    pooled = np.percentile(records["latency_s"] * 1000, 50)
    assert all(abs(x - pooled) > 20 for ax in fig.axes for x in _drawn_marks(ax))
    alone = plots.plot_latency_histogram(records)  # without the table: computed the same way
    assert [_drawn_marks(ax) for ax in alone.axes] == [_drawn_marks(ax) for ax in fig.axes]
    with pytest.raises(InvalidSpecError, match="rows for concurrency"):
        plots.plot_latency_histogram(records, summary=table.iloc[:1])


def test_latency_plots_survive_all_requests_failing(tmp_path):
    records = _records(fail_every=1)
    for plot in (plots.plot_latency_histogram, plots.plot_latency_cdf):
        fig = plot(records)
        assert any("no successful requests" in t.get_text() for t in fig.axes[0].texts)
        fig.savefig(tmp_path / "empty.png")


def test_latency_cdf_has_one_line_per_level():
    fig = plots.plot_latency_cdf(_records(levels=(1, 2, 8)))
    ax = fig.axes[0]
    assert len(ax.lines) == 4  # three CDFs and the p99 guide
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["concurrency = 1", "concurrency = 2",
                                                                    "concurrency = 8"]
    open_loop = plots.plot_latency_cdf(_records(levels=(5, 10), open_loop=True), log_x=True)
    assert open_loop.axes[0].get_legend().get_texts()[0].get_text() == "rate = 5"
    assert open_loop.axes[0].get_xscale() == "log"
    single = plots.plot_latency_cdf(_records(), by=None)
    assert single.axes[0].get_legend().get_texts()[0].get_text() == "all requests"
    with pytest.raises(InvalidSpecError, match="no column 'level'"):
        plots.plot_latency_cdf(_records(), by="level")


def test_throughput_and_p99_on_twin_axes(tmp_path):
    records = _records(levels=(1, 2, 4, 8, 16), fail_every=20)
    fig = plots.plot_throughput_vs_concurrency(_summary(records))
    left, right = fig.axes
    assert left.get_ylabel() == "throughput (req/s)" and right.get_ylabel() == "latency (ms)"
    assert left.get_xlabel() == "concurrent requests"
    assert len(left.lines) == 1 and len(right.lines) == 2
    assert len(_by_gid(left, "error-rate", "texts")) == 5
    fig.savefig(tmp_path / "throughput.png")


def test_throughput_against_offered_rate_for_open_loop():
    summary = _summary(_records(levels=(5, 10), open_loop=True), column="rate")
    fig = plots.plot_throughput_vs_concurrency(summary)
    assert fig.axes[0].get_xlabel() == "offered rate (req/s)"
    with pytest.raises(InvalidSpecError, match="lack column"):
        plots.plot_throughput_vs_concurrency(summary.drop(columns="p99_ms"))


def test_latency_plots_want_loadgen_frames():
    with pytest.raises(InvalidSpecError, match="pandas DataFrame"):
        plots.plot_latency_histogram([0.1, 0.2])
    with pytest.raises(InvalidSpecError, match="latency_s"):
        plots.plot_latency_histogram(pd.DataFrame({"ok": [True]}))


# --- comparison --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comparison():
    return compare.compare_embedders(LexicalEmbedder(), LexicalEmbedder(char_ngrams=0, name="words-only"),
                                     load_bilingual())


def test_comparison_panel(tmp_path, no_cjk_font, comparison):
    fig = plots.plot_comparison_panel(comparison)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Retrieval quality (all queries)", "ndcg@10 by language of the relevant document",
                      "Scores: relevant vs irrelevant pairs", "Query latency", "Embedding dimension", "Model memory"]
    quality = fig.axes[0]
    assert len(quality.patches) == 8  # four metrics × two embedders
    heights = [p.get_height() for p in quality.patches[:4]]
    assert heights[0] == pytest.approx(comparison.a.slices.loc["all", "ndcg@10"])
    assert [p.get_height() for p in fig.axes[4].patches] == [comparison.a.dim, comparison.b.dim]
    assert "vocabulary terms" in fig.axes[4].get_ylabel()  # a TF-IDF "dimension" is its vocabulary size
    assert "lexical-tfidf vs words-only" in fig.get_suptitle()
    fig.savefig(tmp_path / "panel.png")
    assert isinstance(fig.axes[0], Axes)


def test_comparison_heatmaps_use_the_dataset_sentences(no_cjk_font, comparison):
    fig = plots.plot_comparison_heatmaps(comparison)
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 2
    n = len(comparison.dataset.sentences)
    assert heatmaps[0].images[0].get_array().shape == (n, n)
    ylabels = [t.get_text() for t in heatmaps[0].get_yticklabels()]
    assert "s-programming-zh" in ylabels[4]  # Chinese sentence shown by id without a CJK font


def test_comparison_pca_has_one_scatter_per_embedder(comparison):
    fig = plots.plot_comparison_pca(comparison, labels=True)
    assert [ax.get_title() for ax in fig.axes] == list(comparison.names)
    assert all(len(ax.texts) == len(comparison.dataset.documents) for ax in fig.axes)


def test_a_cjk_font_installed_after_the_font_cache_is_still_found(monkeypatch):
    import glob

    files = sorted(glob.glob("/usr/share/fonts/**/wqy-microhei.ttc", recursive=True))
    if not files:
        pytest.skip("fonts-wqy-microhei is not installed (make test installs it as root)")
    monkeypatch.setattr(_style.font_manager, "findSystemFonts", lambda *a, **k: ["/nowhere/DejaVuSans.ttf", *files])
    assert _style._register_new_system_cjk_font() == "WenQuanYi Micro Hei"


def test_no_cjk_font_file_means_none(monkeypatch):
    monkeypatch.setattr(_style.font_manager, "findSystemFonts", lambda *a, **k: [])
    assert _style._register_new_system_cjk_font() is None
