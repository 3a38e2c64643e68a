"""Draw the landing page's chapter map, ``book/figures/chapter_map.png``, from ``_toc.yml``.

Run it after adding, removing or renaming a chapter (tests/book/test_site.py fails until the
committed PNG lists the chapters of ``_toc.yml`` with their titles):

    .venv/bin/python book/figures/make_chapter_map.py

One box per chapter (a ``_toc.yml`` entry named ``book/NN_topic``), in reading order; an arc joins
a chapter to each chapter that its "**What it builds on.**" paragraph links to. The chapter list
is also written into the PNG's metadata (key ``Chapters``, JSON) so that the test can read what
the picture shows. It also draws the site's small icon, ``book/_static/favicon.png``.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "book" / "figures" / "chapter_map.png"
FAVICON = ROOT / "book" / "_static" / "favicon.png"
CHAPTER = re.compile(r"(?:^|/)(\d\d)_[A-Za-z0-9_]+$")
LINK = re.compile(r"\]\((?:\./)?(\d\d_[A-Za-z0-9_]+?)(?:\.(?:md|ipynb))?(?:#[^)]*)?\)")


def _toc_files(root: Path) -> list[str]:
    sys.path.insert(0, str(root))  # the checkout's segedu, which owns the toc's reading
    from segedu.book import toc_files

    return toc_files(root)


def _source_text(root: Path, entry: str) -> str | None:
    """The chapter's markdown: ``.md``, else the jupytext ``.py`` with its ``# `` prefixes removed."""
    md, py = root / f"{entry}.md", root / f"{entry}.py"
    if md.is_file():
        return md.read_text()
    if py.is_file():
        return "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                         for line in py.read_text().splitlines())
    return None


def chapters(root: Path = ROOT) -> list[dict]:
    """Each chapter of the toc: ``{"name", "number", "title", "builds_on": [names]}``."""
    found = []
    for entry in _toc_files(root):
        if not CHAPTER.search(entry):
            continue
        name = Path(entry).name
        number, topic = name.split("_", 1)
        text = _source_text(root, entry)
        title, builds_on = topic.replace("_", " ").capitalize(), []
        if text is not None:
            heading = re.search(r"^# (.+)$", text, re.M)
            title = heading.group(1).strip() if heading else title
            para = re.search(r"\*\*What it builds on\.\*\*(.*?)(?:\n\s*\n|\Z)", text, re.S)
            builds_on = list(dict.fromkeys(LINK.findall(para.group(1)))) if para else []
        found.append({"name": name, "number": number, "title": title, "builds_on": builds_on})
    names = {c["name"] for c in found}
    for c in found:  # only arcs to chapters that are in the map
        c["builds_on"] = [b for b in c["builds_on"] if b in names and b != c["name"]]
    return found


def draw(chaps: list[dict], out: Path = OUT) -> Path:
    # Axes in inches (1 data unit = 1 inch, y downwards from the top) so that the boxes can be
    # sized to the measured width of the longest title.
    n, row_h, box_h, left = len(chaps), 0.55, 0.42, 0.05
    row = {c["name"]: i for i, c in enumerate(chaps)}
    spans = [abs(row[c["name"]] - row[p]) for c in chaps for p in c["builds_on"]]
    colours = plt.get_cmap("tab10")
    probe = plt.figure(dpi=110)
    renderer = probe.canvas.get_renderer()
    title_w = max(probe.text(0, 0, c["title"], fontsize=11).get_window_extent(renderer).width
                  for c in chaps) / probe.dpi
    plt.close(probe)
    badge_w = 0.42
    box_w = badge_w + 0.25 + title_w + 0.2
    arc_room = 0.3 + 0.16 * max(spans, default=1)
    width, height = left + box_w + arc_room, 0.45 + n * row_h
    fig = plt.figure(figsize=(width, height), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.text(left, 0.2, "Chapters in reading order; an arrow joins a chapter to the ones it builds on",
            fontsize=9, color="#4a5663", ha="left", va="center")
    y_of = {c["name"]: 0.45 + (i + 0.5) * row_h for i, c in enumerate(chaps)}
    for i, c in enumerate(chaps):
        y = y_of[c["name"]]
        ax.add_patch(FancyBboxPatch((left, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0,rounding_size=0.08",
                                    facecolor="#f4f6f8", edgecolor="#8a96a3", linewidth=1))
        ax.add_patch(FancyBboxPatch((left + 0.06, y - box_h / 2 + 0.06), badge_w, box_h - 0.12,
                                    boxstyle="round,pad=0,rounding_size=0.05",
                                    facecolor=colours(i % 10), edgecolor="none"))
        ax.text(left + 0.06 + badge_w / 2, y, c["number"], ha="center", va="center", color="white",
                fontsize=10.5, fontweight="bold")
        ax.text(left + badge_w + 0.25, y, c["title"], ha="left", va="center", fontsize=11, color="#1d2733")
    x_arc = left + box_w + 0.06
    for c in chaps:
        for pre in c["builds_on"]:
            span = abs(row[c["name"]] - row[pre])
            ax.add_patch(FancyArrowPatch(
                (x_arc, y_of[pre]), (x_arc, y_of[c["name"]]),
                connectionstyle=f"arc3,rad={-0.45 if span > 1 else -0.6}",  # bulging right (y points down)
                arrowstyle="-|>", mutation_scale=10, color=colours(row[c["name"]] % 10),
                linewidth=1.3, alpha=0.85))
    listing = json.dumps([[c["name"], c["title"]] for c in chaps], ensure_ascii=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    # no Software/date entries: the same toc gives the same file
    fig.savefig(out, metadata={"Title": "segedu chapter map", "Software": None, "Chapters": listing})
    plt.close(fig)
    return out


def draw_favicon(out: Path = FAVICON) -> Path:
    """A 32x32 icon: a tiny label map in the class palette (segmentation in one glance)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from segedu.data.classes import PALETTE

    yy, xx = np.mgrid[0:32, 0:32]
    label = np.zeros((32, 32), dtype=np.int64)
    label[((xx - 11) ** 2 + (yy - 12) ** 2) <= 64] = 2             # Paper: a disc
    label[(abs(xx - 22) <= 6) & (abs(yy - 21) <= 8)] = 4            # Metal: a can
    label[((xx - 10) ** 2 / 30 + (yy - 25) ** 2 / 12) <= 1] = 8     # Plastic bag
    rgba = np.concatenate([PALETTE[label], np.full((32, 32, 1), 255, np.uint8)], axis=2)
    rgba[label == 0] = (245, 246, 248, 255)
    out.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(out, rgba, metadata={"Software": None})
    return out


if __name__ == "__main__":
    chaps = chapters()
    print(f"wrote {draw(chaps).relative_to(ROOT)} with {len(chaps)} chapters: "
          + ", ".join(c["number"] for c in chaps))
    print(f"wrote {draw_favicon().relative_to(ROOT)}")
