"""The HTML book builds from the committed outputs with warnings as errors."""
import re

from segedu import book


def test_html_builds_strictly_with_every_chapter(tmp_path):
    index = book.build_html(strict=True, output=tmp_path, quiet=True)
    html_dir = index.parent
    for entry in book.toc_files():
        page = html_dir / f"{entry}.html"
        assert page.is_file(), f"{entry} not built"
    chapter = (html_dir / "book" / "00_how_to_use.html").read_text()
    # the executed outputs are in the page, figures as PNG images
    assert "ignore index: 255" in chapter
    assert re.search(r'<img[^>]+src="[^"]+\.png"', chapter)
