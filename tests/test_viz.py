"""segedu.viz: the pictures every chapter draws (Agg backend, no display)."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from segedu import viz  # noqa: E402
from segedu.data import IGNORE_INDEX, PALETTE  # noqa: E402


def test_colorize_maps_each_class_to_its_palette_colour():
    mask = torch.tensor([[0, 1], [2, IGNORE_INDEX]])
    rgb = viz.colorize(mask)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == PALETTE[0]).all() and (rgb[0, 1] == PALETTE[1]).all() and (rgb[1, 0] == PALETTE[2]).all()


def test_learning_curves_draw_one_line_per_run_with_its_values():
    histories = {"a": [{"val_miou": 0.1}, {"val_miou": 0.3}], "b": [{"val_miou": 0.2}]}
    fig = viz.plot_learning_curves(histories, title="t")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert list(lines[0].get_ydata()) == [0.1, 0.3] and list(lines[0].get_xdata()) == [1, 2]
    assert fig.axes[0].get_title() == "t"


def test_learning_curves_draw_the_floor_and_the_ceiling_as_labelled_horizontal_lines():
    histories = {"a": [{"val_miou": 0.1}, {"val_miou": 0.3}]}
    fig = viz.plot_learning_curves(histories, floor=np.float64(0.0643), ceiling=0.4349)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines) == ["a", "all Background (floor) 0.064", "ceiling 0.435"]
    assert list(lines["all Background (floor) 0.064"].get_ydata()) == [0.0643, 0.0643]
    assert list(lines["ceiling 0.435"].get_ydata()) == [0.4349, 0.4349]
    legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert legend == list(lines)
    assert all(tick == int(tick) for tick in fig.axes[0].get_xticks())  # whole epochs
    without = viz.plot_learning_curves(histories)
    assert [line.get_label() for line in without.axes[0].get_lines()] == ["a"]


def test_show_predictions_has_image_truth_and_one_panel_per_model():
    image = torch.rand(3, 8, 8)
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[2:5, 2:5] = 3
    fig = viz.show_predictions(image, mask, {"m1": mask, "m2": torch.zeros_like(mask)})
    assert [ax.get_title() for ax in fig.axes] == ["image", "ground truth", "m1", "m2"]
    assert (fig.axes[3].get_images()[0].get_array()[0, 0] == PALETTE[0]).all()
