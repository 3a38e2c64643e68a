"""Numbers in the prose: every number a chapter's markdown quotes is printed by that chapter's outputs
(or set by its code, or cited from a paper). The rules are in `segedu/prose_check.py`; the first
tests below pin them on hand-made cells, so the check over the chapters can itself fail."""
from decimal import Decimal as D
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from segedu import book
from segedu.prose_check import Printed, prose_numbers, quoted_numbers

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = book.notebooks(ROOT)
IDS = [p.stem for p in CHAPTERS]


def notebook(markdown: str, printed: str = "", code: str = "print(result)", **data) -> nbformat.NotebookNode:
    """A chapter of one code cell (its stream ``printed``, its rich ``data``) and one markdown cell."""
    outputs = [new_output("stream", name="stdout", text=printed)] if printed else []
    if data:
        outputs.append(new_output("execute_result", data=data, execution_count=1))
    return new_notebook(cells=[new_code_cell(code, outputs=outputs, execution_count=1), new_markdown_cell(markdown)])


def unbacked(markdown: str, printed: str = "", **kwargs) -> list[str]:
    return [u.number for u in prose_numbers(notebook(markdown, printed, **kwargs))]


def quoted(markdown: str) -> list[str]:
    return [q.text for q in quoted_numbers(markdown) if not q.cited]


# --- what counts as a quoted number ---------------------------------------------------------------

def test_measured_looking_numbers_are_found():
    text = ("mIoU 0.0869 ± 0.0015, +0.0059 and −0.0201, 14% and 10.79 %, 1.12× and 4.3x faster, "
            "20.5M parameters, 157 s, 12 ms, 103 GFLOPs, 40 images/s, 46 times, 13 to 18 times.")
    assert quoted(text) == ["0.0869", "0.0015", "+0.0059", "−0.0201", "14%", "10.79 %", "1.12×", "4.3x",
                            "20.5M", "157", "12", "103", "40", "46", "13", "18"]


def test_years_references_versions_sizes_and_counts_are_not_quoted_numbers():
    text = ("In 2015 (Sec. 3.1, Fig. 2) and Sections 3.1 and 3.2, see chapter 06 and exercise 19.1; "
            "Python 3.11 and torch 2.4.1, jupyter-book 1.x; ResNet-101 on VOC2011 in bf16, DeepLab v3.1; "
            "a 3×3 filter on 64×64 crops, 7×7×4096, 1/4 of the image, 8:2 splits, 480 images, "
            "2 CPU cores, upsampled 4×, 1e-6, the 1s and 0s of a mask, FCN-16s.\n\n1. An exercise.")
    assert quoted(text) == []


def test_code_math_links_and_html_are_not_read():
    text = ("Set `lr=0.01` and ``x = 0.5``; $q = 0.7$ and $$p = 0.25$$; [the run](runs/0.0869.md), "
            "![a plot](fig_0.5.png), <img width=\"0.75\"> and https://example.org/v0.9.html.\n"
            "```python\nmomentum = 0.9\n```\n")
    assert quoted(text) == []


# --- when a number is backed ----------------------------------------------------------------------

def test_a_printed_number_backs_the_prose_and_a_missing_one_does_not():
    assert unbacked("The baseline scored 0.0869.", "baseline mIoU 0.0869\n") == []
    assert unbacked("The baseline scored 0.0871.", "baseline mIoU 0.0869\n") == ["0.0871"]
    assert unbacked("The baseline scored 0.0869.") == ["0.0869"]


def test_rounding_of_a_printed_number():
    assert unbacked("about 0.087 mIoU", "0.0869") == []
    assert unbacked("about 0.09 mIoU", "0.0869") == []
    assert unbacked("about 0.088 mIoU", "0.0869") == ["0.088"]  # not how 0.0869 rounds
    assert unbacked("exactly 0.08690", "0.0869") == []          # a trailing zero is the same value
    assert unbacked("as much as 0.08692", "0.0869") == ["0.08692"]  # more digits than were printed


def test_percent_and_fraction():
    assert unbacked("Background holds 62% of the pixels.", "share 0.6195") == []
    assert unbacked("Background holds 61.9% of the pixels.", "Background 61.948 (percent column)") == []
    assert unbacked("Background holds 0.62 of the pixels.", "Background 61.95%") == []
    assert unbacked("Background holds 61% of the pixels.", "share 0.6195") == ["61%"]
    # an integer percentage needs a percentage or a fraction, not any number near 14
    assert unbacked("14% of the images", "14 images") == ["14%"]
    assert unbacked("14% of the images", "14.2% of the images") == []


def test_ratios_signs_and_multipliers():
    assert unbacked("1.1× the speed", "speed-up 1.12x") == []
    assert unbacked("+0.0059 and −0.0069 against the baseline", "swa +0.0059\ncutmix -0.0069") == []
    assert unbacked("a gain of 0.0059", "swa +0.0059") == []
    assert unbacked("20.5M parameters", "20512345 parameters") == []
    assert unbacked("20.5M parameters", "20.51M") == []
    assert unbacked("20.5M parameters", "20.6M") == ["20.5M"]


def test_an_integer_is_backed_only_in_its_unit():
    assert unbacked("training took 157 s", "train: 156.8 s") == []
    assert unbacked("training took 157 s", "157 images") == ["157"]
    assert unbacked("about 46 times the model", "147.8 ms against 3.2 ms") == ["46"]
    assert unbacked("about 46 times the model", "CRF: 46.2x the model's time") == []
    assert unbacked("the CRF cost 13 to 18 times", "13 images, 18 classes") == ["13", "18"]


def test_a_difference_of_printed_numbers_is_not_backed():
    assert unbacked("PSPNet's 0.0013 over v3+", "pspnet 0.1124\ndeeplabv3plus 0.1111") == ["0.0013"]


def test_a_number_the_code_sets_is_backed_by_the_code():
    assert unbacked("trained at lr 0.01 with a 10% warm-up", code="train(lr=0.01, warmup=0.1)") == []
    assert unbacked("trained at lr 0.02", code="train(lr=0.01)") == ["0.02"]


def test_text_html_and_markdown_outputs_count_and_tags_do_not():
    assert unbacked("mIoU 0.0869", **{"text/html": "<td>0.0869</td>"}) == []
    assert unbacked("mIoU 0.0869", **{"text/markdown": "| 0.0869 |"}) == []
    assert unbacked("width 0.75", **{"text/html": '<td style="width: 0.75em">x</td>'}) == ["0.75"]
    assert unbacked("mIoU 0.0869", **{"image/png": "0.0869"}) == ["0.0869"]


# --- cited numbers ----------------------------------------------------------------------------------

def test_a_number_with_its_source_in_parentheses_is_cited():
    for text in ("VOC2011 val mean IU 59.4 / 62.4 / 62.7 (Long et al. 2015, Table 3).",
                 "DeepLab-LargeFOV has 20.5M parameters (the paper's Table 1).",
                 "The front-end reached 71.3 (Yu & Koltun, ICLR 2016).",
                 "With bf16, 1.95× to 2.2× (`benchmarks/RESULTS.md`).",
                 "The chapter took 3.3 minutes (book/run_log.md).",
                 "FCN-8s 134M (the paper's count; see [FCN](06_fcn)).",
                 "(Long et al. 2015 report 62.7 mean IU on VOC2011.)"):
        assert unbacked(text) == [], text


def test_a_source_covers_only_the_numbers_just_before_it():
    text = "We measured 0.0869; the paper reports 62.7 (Long et al. 2015)."
    assert unbacked(text) == ["0.0869"]
    text = "Ours has 0.64M parameters against 20.5M (the paper's Table 1)."
    assert unbacked(text) == ["0.64M"]
    text = "Our 0.0869 is far below what the original authors reported on PASCAL VOC (Long et al. 2015)."
    assert unbacked(text) == ["0.0869"]


def test_a_parenthesis_that_is_not_a_source_cites_nothing():
    assert unbacked("at width 0.125 (an eighth of the paper's channels)") == ["0.125"]
    assert unbacked("PSPNet 45.4 (images/s at batch 1)") == ["45.4"]
    assert unbacked("mIoU 0.0869 (see chapter 12)") == ["0.0869"]


# --- the report ---------------------------------------------------------------------------------------

def test_the_report_names_the_cell_the_line_and_its_text():
    nb = notebook("## Summary\n\n* v3+ scored 0.1111 mIoU\n* PSPNet scored 0.1124 mIoU", "pspnet 0.1124\n")
    [u] = prose_numbers(nb)
    assert (u.number, u.cell, u.line, u.text) == ("0.1111", 1, 3, "* v3+ scored 0.1111 mIoU")
    assert "0.1111" in str(u) and "markdown cell 1, line 3" in str(u)


def test_the_check_reads_a_notebook_file(tmp_path):
    path = tmp_path / "99_chapter.ipynb"
    nbformat.write(notebook("It scored 0.5 and 0.25.", "0.5"), path)
    assert [u.number for u in prose_numbers(path)] == ["0.25"]
    assert [u.number for u in prose_numbers(str(path))] == ["0.25"]


def test_printed_numbers_are_parsed_with_their_forms():
    printed = Printed("1,024 images; 14.2%; 3.4 s; 6.6× the time; 134.49M parameters; 1.5e-05", "lr = 1e-3")
    assert printed.percent == [D("14.2")]
    assert D(1024) in printed.raw and D("0.142") in printed.fraction and D("0.000015") in printed.raw
    assert printed.by_unit["s"] == [D("3.4")] and printed.by_unit["x"] == [D("6.6")]
    assert printed.by_unit["M"] == [D("134.49")]
    assert printed.code == {D("0.001")}


# --- the chapters ---------------------------------------------------------------------------------

def _py_line(py: Path, text: str) -> str:
    """Where a markdown line sits in the chapter's source, for the one who fixes it."""
    for number, line in enumerate(py.read_text().splitlines(), 1):
        if line.rstrip() == f"# {text}".rstrip():
            return f"{py.name}:{number}"
    return py.name


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_every_number_in_the_prose_is_printed_by_the_chapter(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} missing: run `make book NB={py.stem}`"
    found = prose_numbers(ipynb)
    listing = "\n".join(f"  {_py_line(py, u.text)}: {u}" for u in found)
    assert not found, (
        f"{py.stem}: {len(found)} number(s) in the prose that {ipynb.name}'s outputs do not print:\n{listing}\n"
        f"Correct the prose in {py.name} and copy it with `python -m segedu book sync-markdown "
        f"{py.stem[:2]}`; a number quoted from a paper or a file takes its source in parentheses right "
        f"after it, e.g. '62.7 (Long et al. 2015, Table 3)' (the rules: segedu/prose_check.py)."
    )
