"""Shared plotting helpers: figures that work headless, a CJK font when one is installed and a clean fallback
(ids or ``[zh]`` instead of Chinese text, so no missing-glyph warnings) when none is."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence

import matplotlib.pyplot  # noqa: F401 - in Jupyter this registers the inline display of returned Figures
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.text import Text

CJK_FONT_ENV = "TKE_PLAYBOOK_CJK_FONT"
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Noto Sans CJK JP", "WenQuanYi Micro Hei",
                "WenQuanYi Zen Hei", "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti SC", "Hiragino Sans GB",
                "Arial Unicode MS", "Droid Sans Fallback", "AR PL UMing CN")
_CJK_RUN = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]+")
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")
MODEL_COLORS = ("#3b6fb6", "#e07b39")


@functools.lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of an installed font with Chinese glyphs, or None.

    ``$TKE_PLAYBOOK_CJK_FONT`` may name a font file to register (e.g. a NotoSansCJK .otf/.ttc). On Debian or Ubuntu
    ``apt-get install fonts-noto-cjk`` (or ``fonts-wqy-microhei``) provides one."""
    path = os.environ.get(CJK_FONT_ENV)
    if path and os.path.isfile(path):
        try:
            font_manager.fontManager.addfont(path)
            return font_manager.FontProperties(fname=path).get_name()
        except (OSError, RuntimeError, ValueError):
            pass
    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = next((family for family in CJK_FAMILIES if family in installed), None)
    return found or _register_new_system_cjk_font()


_CJK_FILE_HINTS = ("wqy", "notosanscjk", "notoserifcjk", "sourcehansans", "droidsansfallback", "uming", "ukai")


def _register_new_system_cjk_font() -> str | None:
    """A CJK font installed after matplotlib built its font cache (say by ``make demo`` on a machine where
    matplotlib ran before) is not in ``ttflist``: find its file among the system fonts and register it."""
    try:
        paths = font_manager.findSystemFonts()
    except (OSError, RuntimeError):
        return None
    for path in sorted(paths):
        if any(hint in os.path.basename(path).lower().replace("-", "") for hint in _CJK_FILE_HINTS):
            try:
                font_manager.fontManager.addfont(path)
                name = font_manager.FontProperties(fname=path).get_name()
            except (OSError, RuntimeError, ValueError):
                continue
            if name in CJK_FAMILIES:
                return name
    return None


def has_cjk(text: str) -> bool:
    return bool(_CJK_RUN.search(str(text)))


def safe_labels(labels: Sequence[str], fallbacks: Sequence[str] | None = None) -> list[str]:
    """``labels`` as they can be drawn: unchanged when a CJK font exists or a label has no Chinese; otherwise the
    matching fallback (e.g. a sentence id) or the label with Chinese runs replaced by ``[zh]``."""
    if cjk_font() is not None:
        return [str(label) for label in labels]
    out = []
    for i, label in enumerate(labels):
        label = str(label)
        if has_cjk(label):
            label = str(fallbacks[i]) if fallbacks is not None and i < len(fallbacks) else strip_cjk(label)
        out.append(label)
    return out


def strip_cjk(text: str) -> str:
    """Chinese runs replaced by ``[zh]`` (consecutive ones merged, spaces collapsed)."""
    text = re.sub(r"(\[zh\]\s*)+", "[zh] ", _CJK_RUN.sub(" [zh] ", str(text)))
    return re.sub(r"\s+", " ", text).strip()


def new_figure(width: float, height: float, **subplot_kw):
    """A Figure not attached to pyplot: nothing to close, no GUI, shown once when a notebook cell returns it."""
    return Figure(figsize=(width, height), layout="constrained", **subplot_kw)


def finish(fig: Figure) -> Figure:
    """Give Chinese text a CJK font, or replace it when there is none (the safety net for titles and legends)."""
    font = cjk_font()
    for text in fig.findobj(Text):
        content = text.get_text()
        if not has_cjk(content):
            continue
        if font is not None:
            text.set_fontfamily([font, "DejaVu Sans"])
        else:
            text.set_text(strip_cjk(content))
    return fig


def figure_and_axes(ax, width: float, height: float):
    """``(fig, ax, owns)``: a new figure and axes when ``ax`` is None, else ``ax``'s figure."""
    if ax is not None:
        return ax.figure, ax, False
    fig = new_figure(width, height)
    return fig, fig.add_subplot(), True


def done(fig: Figure, ax, owns: bool):
    """What plot functions return: the Figure they made, or the Axes they were given."""
    finish(fig)
    return fig if owns else ax


def topic_blocks(topics: Sequence[str]) -> list[tuple[str, int, int]]:
    """Contiguous runs of equal topics as ``(topic, start, stop)``."""
    blocks: list[tuple[str, int, int]] = []
    for i, topic in enumerate(topics):
        if blocks and blocks[-1][0] == topic and blocks[-1][2] == i:
            blocks[-1] = (topic, blocks[-1][1], i + 1)
        else:
            blocks.append((topic, i, i + 1))
    return blocks
