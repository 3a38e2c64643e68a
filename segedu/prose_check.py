"""Numbers in the prose: every measured-looking number a chapter's markdown quotes must be backed by
that chapter's own outputs.

A chapter's summary quotes the numbers of its last run ("PSPNet 0.1124 mIoU, 75.7 images/s"). A
re-execution, or another profile, prints new ones; :func:`prose_numbers` lists the quoted numbers
that the executed notebook does not print, so stale prose fails a test
(``tests/book/test_prose_numbers.py``) instead of being read.

**What counts as a quoted number** (:func:`quoted_numbers`): decimals (``0.0869``, ``46.3``), signed
differences (``+0.0059``, ``−0.0201``), percentages (``14%``, ``10.79 %``), ratios (``1.12×``,
``4.3x``) and integers with a unit of measurement (``157 s``, ``12 ms``, ``134M``, ``103 GFLOPs``,
``40 images/s``, ``46 times``; a range takes the unit of its end: ``13 to 18 times``). Not counted:
integers without such a unit (counts, sizes, "3×3", "64×64", "2×"), years, references and versions
("Sec. 3.1", "chapter 06", "Fig. 2", "exercise 19.1", "Table 3", "Python 3.11", "1.2.3"), numbers
glued to a name ("ResNet-101", "VOC2011", "bf16", "v3.1"), scientific notation (``1e-6``), and
everything inside inline code, fenced code, LaTeX math, link targets, URLs and HTML tags: a
parameter is written as code (``width=0.125``) or math (``$q = 0.7$``).

**Backed** (:meth:`Printed.backs`): the number, as written, rounds from a number printed by a code
cell of the chapter (stream text and ``text/plain``, ``text/markdown``, ``text/html`` outputs), that
is, lies within half a unit of its last digit: prose ``0.087`` is backed by an output ``0.0869``,
``14%`` by ``0.142``, ``14.2%`` or (a column of percentages) ``14.2``, ``0.14`` by ``14.2%``, ``1.1×``
by ``1.12x``, ``−0.0069`` by ``0.0069`` (signs are ignored), ``20.5M`` by ``20.5M`` or
``20,512,345``. An integer must be printed in its unit (``157 s`` by ``156.8 s``, ``46 times`` by
``46.2x``, ``7%`` by ``7.1%`` or ``0.071``): small integers are printed everywhere. A number that a
code cell's source holds (a hyper-parameter the code sets, ``lr=0.01``, or ``0.1`` for ``10%``) is
backed by the code. A difference of two printed numbers is *not* backed: quote the two numbers.

**Cited numbers** are not computed by the notebook: a paper's score, a benchmark file's speed-up,
the run log's time. The prose names the source in parentheses right after them, and the checker
skips them::

    mean IU 59.4 / 62.4 / 62.7 (Long et al. 2015, Table 3)
    20.5M parameters (the paper's Table 1)
    took 3.3 minutes (`book/run_log.md`)

A *source* is a parenthesis that starts with a paper ("Long et al.", "Yu & Koltun, ICLR 2016",
"the paper's", "paper") or a file name with its extension (``benchmarks/RESULTS.md``). It covers
the numbers inside it and the numbers just before it: the last one at most three words before the
parenthesis, and the list that number ends ("59.4 / 62.4 / 62.7", "1.95× to 2.2×", "1.5M, 3.5M and
9.4M": at most one word besides "and", "or" and "to" between two numbers), with no sentence or
clause break (``.``, ``;``, ``:``, a blank line) in between. It is plain text, so it reads the same in
JupyterLab and in the HTML book and needs no Sphinx role or extension.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

#: output MIME types whose text counts as printed by the chapter
OUTPUT_MIME = ("text/plain", "text/markdown", "text/html")

#: units that make an integer a measurement ("157 s", "12 ms", "103 GFLOPs", "40 images/s",
#: "46 times"); a range takes its unit from its end ("13 to 18 times")
_UNIT = (r"(?:times|ms|µs|us|s|sec|secs|seconds?|min|mins|minutes?|h|hours?|images/s|img/s|it/s|fps"
         r"|[kKMGT]i?B|bytes|[kMGT]?FLOPs?|[kMGT]?MACs?)")
#: a multiplier written onto the number: "20.5M" parameters, "1.2k" images
_MULTIPLIER = {"k": 3, "K": 3, "M": 6, "G": 9, "B": 9, "T": 12}
#: spellings of one unit, for matching an integer with the unit an output prints it in
_SAME_UNIT = {"sec": "s", "secs": "s", "second": "s", "seconds": "s", "µs": "us", "mins": "min", "minute": "min",
              "minutes": "min", "hour": "h", "hours": "h", "images/s": "img/s", "fps": "img/s", "times": "x",
              "×": "x", "K": "k", "bytes": "B"}


def _unit(word: str) -> str:
    word = word.strip()
    if re.fullmatch(r"[kMGT]?(?:FLOP|MAC)s?", word):
        return word.rstrip("s") + "s"
    return _SAME_UNIT.get(word, word)


_NUMBER = re.compile(r"[+\-−]?\d+(?:,\d{3})*(?:\.\d+)?")
_PRINTED = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][+\-]?\d+)?"
                      r"(?:(?P<pct>\s?%)|(?P<mult>[kKMGBT])(?![A-Za-z])"
                      rf"|\s?(?P<unit>x(?![A-Za-z])|×|{_UNIT}(?![A-Za-z0-9_])))?")
_LITERAL = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][+\-]?\d+)?")  # a number in code: 0.01, 1e-3
_RANGE = re.compile(r"\s*(?:to|–|-|and|or)\s*\d+(?:\.\d+)?")
_AFTER = re.compile(
    r"(?P<pct>\s?%)"
    r"|(?P<dim>\s?[×x]\s?\d)"                       # 3×3, 64x64: a size, not a ratio
    r"|(?P<ratio>\s?(?:×|x(?![A-Za-z0-9_])))"        # 1.12×, 4.3x
    r"|(?P<mult>[kKMGBT])(?![A-Za-z0-9_])"         # 20.5M
    r"|(?P<glued>(?:ms|s|h|min)(?![A-Za-z0-9_]))"   # 3.4s (for integers: 1s and 0s are plurals)
    rf"|(?P<unit>\s+{_UNIT}(?![A-Za-z0-9_]))"       # 157 s, 103 GFLOPs
)
#: a reference or a version, not a measurement: "Sec. 3.1", "chapter 06", "Fig. 2", "exercise 19.1",
#: "Table 3", "Python 3.11", and ranges or pairs of them ("Sec. 3–4", "Sections 3.1 and 3.2")
_REF_NUMBER = r"\(?\d+(?:\.\d+)*[a-z]?\)?"
_REFERENCE = re.compile(
    r"(?:\b(?:[Ss]ec(?:tion)?s?\.?|[Cc]hapters?|[Cc]h\.|[Ff]ig(?:ure)?s?\.?|[Tt]ab(?:le)?s?\.?"
    r"|[Ee]q(?:uation)?s?\.?|[Ee]xercises?|[Aa]ppendix|[Pp]art|[Ll]ines?|[Pp]ages?|pp?\."
    r"|[Aa]lgorithm|[Ll]emma|[Tt]heorem|[Vv]ersions?|[Pp]ython|[Tt]orch|PyTorch|CUDA)"
    r"|§§?)\s*" + _REF_NUMBER + r"(?:\s*(?:and|or|to|–|-|&)\s*" + _REF_NUMBER + r")*"
)
#: a source in parentheses: the parenthesis starts with a paper ("Long et al. 2015, Table 3",
#: "Yu & Koltun, ICLR 2016", "the paper's Table 1", "paper") or a file ("benchmarks/RESULTS.md",
#: "`book/run_log.md`": a name with an extension, in backticks or not)
_PAREN = re.compile(r"(?<!\])\(([^()]*)\)")
_SOURCE = re.compile(
    r"\s*(?:"
    r"(?:see\s+)?[A-Z][\w'’-]+(?:\s+(?:&|and)\s+[A-Z][\w'’-]+|\s+et\s+al\.?)?,?\s+(?:[A-Z][A-Za-z]*\s+)?(?:19|20)\d\d\b"
    r"|[A-Z][\w'’-]+\s+et\s+al\b"
    r"|(?:the\s+)?papers?(?:'s|’s|'|’)?(?![\w-])"
    r"|`?[\w.-]+(?:/[\w.-]+)*\.(?:md|json|txt|csv|py|ipynb|yml|yaml|log)\b`?"
    r")"
)
#: what cannot be part of a citation's reach: a sentence or clause break, a blank line
_BREAK = re.compile(r"[.;:!?]\s|[.;:!?]$|\n\s*\n")
_WORD = re.compile(r"[^\s,/&()\[\]|*_–—-]+")
#: a citation covers a number at most this many words before it
CITATION_REACH = 3

_LINKS = (
    re.compile(r"!\[[^\]]*\]\([^)]*\)"),                   # images
    re.compile(r"(?<=\])\([^)\s]*(?:\s+\"[^\"]*\")?\)"),   # link targets
    re.compile(r"https?://\S+"),                           # bare URLs
)
_MASKS = (
    re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M),   # fenced code
    re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S),        # inline code
    re.compile(r"\$\$.*?\$\$", re.S),                      # display math
    re.compile(r"(?<![\\$])\$(?!\s)[^$\n]+?(?<!\s)\$"),    # inline math
    re.compile(r"\\\(.*?\\\)|\\\[.*?\\\]", re.S),
    re.compile(r"<!--.*?-->", re.S),                       # HTML comments and tags
    re.compile(r"<[^>\n]+>"),
    *_LINKS,
)


@dataclass(frozen=True)
class Quoted:
    """A measured-looking number in a markdown cell."""

    text: str        # as written: "−0.0069", "14%", "1.12×", "20.5M", "157 s"
    value: Decimal   # its absolute value in the unit written (14 for 14%, 20.5 for 20.5M)
    decimals: int    # digits written after the decimal point
    percent: bool
    scale: int       # power of ten of a written multiplier (6 for "M")
    unit: str | None  # "s", "x" (for "times" and "×"), "M", ...: an integer is matched in its unit
    start: int       # offsets in the cell's text
    end: int
    cited: bool = False


@dataclass(frozen=True)
class Unbacked:
    """A quoted number that the chapter's outputs and code do not back."""

    number: str   # as written
    cell: int     # index of the markdown cell in the notebook
    line: int     # line within that cell, from 1
    text: str     # that line

    def __str__(self) -> str:
        return f"{self.number!r} (markdown cell {self.cell}, line {self.line}): {self.text.strip()}"


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def _masked(markdown: str) -> str:
    """The markdown with code, math, links' targets, URLs and HTML blanked out (offsets kept)."""
    text = markdown
    for pattern in _MASKS:
        for m in list(pattern.finditer(text)):
            text = _blank(text, m.start(), m.end())
    return text


def _parse(digits: str) -> Decimal:
    return Decimal(digits.replace(",", "").replace("−", "-").lstrip("+"))


def quoted_numbers(markdown: str) -> list[Quoted]:
    """The measured-looking numbers of one markdown cell, each marked ``cited`` when a source in
    parentheses follows it (see the module's docstring for the rules)."""
    text = _masked(markdown)
    linked = markdown  # links' targets blanked, so a source may hold a link; inline code kept, so it may name a file
    for pattern in _LINKS:
        for m in list(pattern.finditer(linked)):
            linked = _blank(linked, m.start(), m.end())
    sources = []  # offsets of the "(" of each source, which is then blanked with its content
    for m in _PAREN.finditer(linked):
        if _SOURCE.match(m.group(1)):
            sources.append(m.start())
            text = _blank(text, m.start(), m.end())
    for m in list(_REFERENCE.finditer(text)):
        text = _blank(text, m.start(), m.end())
    found = []
    for m in _NUMBER.finditer(text):
        start, end, token = m.start(), m.end(), m.group()
        before = text[start - 1] if start else " "
        if token[0] in "+-−" and (before.isalnum() or before in "_."):
            continue  # ResNet-50, v3+1
        if before.isalnum() or before in "_./^×":
            continue  # glued to a name (VOC2011, bf16), a version, a fraction, a size (64×64)
        if re.match(r"\.\d|/\d|[eE][+\-]?\d|\.[A-Za-z]", text[end:end + 2]):
            continue  # 1.2.3, 1/4, 1e-6, 1.x
        after = _AFTER.match(text, end)
        kind = after.lastgroup if after else None
        if kind == "dim" or (kind is None and re.match(r"[A-Za-z0-9_]", text[end:end + 1])):
            continue  # 3×3, 2nd, 3D
        unit = after
        if kind is None and (span := _RANGE.match(text, end)):  # "13 to 18 times": the range's unit
            unit = _AFTER.match(text, span.end())
            kind = unit.lastgroup if unit and unit.lastgroup in ("pct", "mult", "unit") else None
        digits = token.lstrip("+-−")
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        if not decimals and kind not in ("pct", "mult", "unit"):
            continue  # a plain integer: a count or a size, not a measurement
        written = text[start:after.end()].strip() if after and kind in ("pct", "ratio", "mult") else token
        unit_name = {"ratio": "x", "mult": unit.group("mult") if kind == "mult" else None,
                     "unit": unit.group("unit") if kind == "unit" else None}.get(kind)
        found.append(Quoted(text=written, value=abs(_parse(token)), decimals=decimals, percent=kind == "pct",
                            scale=_MULTIPLIER[unit.group("mult")] if kind == "mult" else 0,
                            unit=_unit(unit_name) if unit_name else None, start=start, end=start + len(written)))
    return _mark_cited(found, text, sources)


def _reaches(gap: str, chained: bool) -> bool:
    """Whether a source reaches over ``gap``: from a number to the parenthesis, at most
    :data:`CITATION_REACH` words; between two numbers of a list ("59.4 / 62.4 / 62.7", "1.95× to
    2.2×", "1.5M, 3.5M and 9.4M"), at most one word besides "and", "or" and "to"."""
    if _BREAK.search(gap):
        return False
    words = _WORD.findall(gap)
    if chained:
        return len([w for w in words if w not in ("and", "or", "to")]) <= 1
    return len(words) <= CITATION_REACH


def _mark_cited(found: list[Quoted], text: str, sources: list[int]) -> list[Quoted]:
    cited = set()
    for paren in sources:
        edge = paren
        for i in range(len(found) - 1, -1, -1):
            q = found[i]
            if q.start >= edge:
                continue
            if not _reaches(text[q.end:edge], chained=edge != paren):
                break
            cited.add(i)
            edge = q.start
    return [Quoted(**{**q.__dict__, "cited": True}) if i in cited else q for i, q in enumerate(found)]


class Printed:
    """The numbers a chapter prints, sorted for range look-ups, and the numbers its code holds."""

    def __init__(self, printed_text: str = "", code_text: str = ""):
        plain, percent, by_unit = [], [], {}
        for m in _PRINTED.finditer(printed_text):
            number = re.match(r"[\d,.eE+\-]+", m.group()).group().rstrip(".,+-eE")
            parts = [number] + (number.split(",") if "," in number else [])  # 1,024, or a list 64,128
            for part in parts:
                try:
                    value = abs(_parse(part))
                except InvalidOperation:
                    continue
                (percent if m.group("pct") else plain).append(value)
                unit = m.group("mult") or m.group("unit")
                if unit:
                    by_unit.setdefault(_unit(unit), []).append(value)
        self.percent = sorted(percent)
        self.raw = sorted(plain + percent)
        self.fraction = sorted(plain + [v / 100 for v in percent])
        self.by_unit = {unit: sorted(values) for unit, values in by_unit.items()}
        self.code = {Decimal(m.group()) for m in _LITERAL.finditer(code_text)}

    @staticmethod
    def _near(values: list[Decimal], target: Decimal, half: Decimal) -> bool:
        i = bisect.bisect_left(values, target - half)
        return i < len(values) and values[i] <= target + half

    def backs(self, q: Quoted) -> bool:
        """Whether ``q`` rounds from a printed number (as written, as a fraction or a percentage, or
        times its multiplier), or equals a number of the code (``0.01``, or ``0.1`` for ``10%``).
        An integer matches only a number printed with its unit (``157 s``: ``156.8 s``; ``14%``:
        ``14.2%`` or ``0.142``): small integers are printed everywhere."""
        exact = {q.value, q.value / 100 if q.percent else q.value, q.value.scaleb(q.scale)}
        if exact & self.code:
            return True
        half = Decimal(5).scaleb(-(q.decimals + 1))
        if q.percent:  # 14% is printed as 14.2% or 0.142, or as 14.2 in a column of percentages
            return (self._near(self.percent if not q.decimals else self.raw, q.value, half)
                    or self._near(self.fraction, q.value / 100, half / 100))
        if q.scale and self._near(self.raw, q.value.scaleb(q.scale), half.scaleb(q.scale)):
            return True  # 20.5M is printed as 20,512,345
        if not q.decimals:
            return self._near(self.by_unit.get(q.unit, []), q.value, half)
        return self._near(self.raw, q.value, half) or self._near(self.percent, q.value * 100, half * 100)


def backs(quoted: Quoted, printed: str = "", code: str = "") -> bool:
    """Whether output text ``printed`` or code-cell source ``code`` backs ``quoted``."""
    return Printed(printed, code).backs(quoted)


def _text(value) -> str:
    return value if isinstance(value, str) else "".join(value)


def output_text(cell) -> str:
    """What a code cell printed: its streams and its text, markdown and HTML results (tags dropped)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(_text(out.get("text", "")))
        for mime in OUTPUT_MIME:
            if mime in out.get("data", {}):
                text = _text(out["data"][mime])
                parts.append(re.sub(r"<[^>]+>", " ", text) if mime == "text/html" else text)
    return "\n".join(parts)


def prose_numbers(notebook) -> list[Unbacked]:
    """The numbers quoted in an executed notebook's markdown that neither its outputs nor its code
    back, in reading order. ``notebook`` is a path or an nbformat notebook."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
    code = [c for c in nb.cells if c.cell_type == "code"]
    printed = Printed("\n".join(output_text(c) for c in code), "\n".join(_text(c.source) for c in code))
    unbacked = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        source = _text(cell.source)
        lines = source.splitlines()
        for q in quoted_numbers(source):
            if q.cited or printed.backs(q):
                continue
            line = source.count("\n", 0, q.start)
            unbacked.append(Unbacked(number=q.text, cell=index, line=line + 1, text=lines[line]))
    return unbacked
