

def test_shape_text_names_only_spatial_sides_of_the_profile_size():
    import torch

    from segedu.notebook import shape_text

    assert shape_text(torch.zeros(4, 3, 64, 64), 64) == "(4, 3, S, S)"
    assert shape_text(torch.zeros(2, 64, 64), 64) == "(2, S, S)"
    assert shape_text(torch.zeros(64, 3, 64, 32), 64) == "(64, 3, S, 32)"  # batch of 64 stays a number
