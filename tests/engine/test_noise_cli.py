"""The label-noise commands from a shell: synth --noise-rate, add-noise, cleanse."""
from __future__ import annotations

import csv
import json

from segedu import cli
from segedu.data import noise
from segedu.engine import train


def test_synth_with_noise_and_add_noise(tmp_path, capsys):
    out = tmp_path / "data"
    assert cli.main(["synth", "--out", str(out), "--images", "10", "--size", "48", "--noise-rate", "0.5",
                     "--noise-kinds", "flip,missing", "--noise-objects", "1"]) == 0
    assert "label noise: 4 of 8 images corrupted" in capsys.readouterr().out
    report = noise.read_report(out / "train_noisy.json")
    assert report.spec.kinds == ("flip", "missing") and report.spec.objects == 1.0
    assert cli.main(["add-noise", str(out), "--noise-rate", "0.25", "--out", str(tmp_path / "n.json")]) == 0
    assert len(noise.read_report(tmp_path / "n.json").corrupted_images) == 2
    capsys.readouterr()
    assert cli.main(["add-noise", str(out), "--noise-rate", "0.25", "--out", str(tmp_path / "n.json")]) == 2
    assert "n.json exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main(["add-noise", str(out), "--noise-rate", "0.25", "--noise-kinds", "flop", "--overwrite",
                     "--out", str(tmp_path / "n.json")]) == 2
    assert "unknown noise kind(s) ['flop']" in capsys.readouterr().err


def test_cleanse_writes_a_ranking_and_its_precision(config, tiny_data, tmp_path, capsys):
    noisy = tmp_path / "train_noisy.json"
    noise.write_noisy(tiny_data / "train.json", noisy, noise.NoiseSpec(rate=0.5, objects=1.0))
    config.train_split = str(noisy)
    run = train(config).run_dir
    out = tmp_path / "ranking.csv"
    assert cli.main(["cleanse", str(run), "--split", str(noisy), "--top", "5", "--out", str(out),
                     "--noise-report", str(noisy), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "ranked by loss" in printed and "precision at 5:" in printed
    rows = list(csv.DictReader(out.open()))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    losses = [float(r["loss"]) for r in rows]
    assert losses == sorted(losses, reverse=True)
    names = {img["file_name"] for img in json.loads(noisy.read_text())["images"]}
    assert {r["file_name"] for r in rows} <= names
