# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (segedu)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Transposed convolution
#
# **What you will learn.** How a network that shrinks an image 32 times can give a label to
# every pixel again: *transposed convolution*, the learnable upsampling of FCN and of the
# decoders that followed. What "transposed" means (a convolution is a matrix; this is its
# transpose), the output-size arithmetic with stride, padding and `output_padding`, where the
# checkerboard artefacts come from, and how to initialise it as bilinear interpolation.
#
# **What it builds on.** Convolution, and the shapes of the [first chapter](00_how_to_use).

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from segedu.models.blocks import bilinear_kernel
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device)
print(session.describe())

# %% [markdown]
# ## A convolution is a matrix
#
# A convolution is linear in its input, so for a fixed kernel it is a matrix $C$: flatten the
# input image into a vector $x$ and $y = Cx$ is the flattened output. Column $j$ of $C$ is the
# output for an input that is 1 at pixel $j$ and 0 elsewhere, so we can build $C$ by convolving
# every unit image. For a 4×4 input and a 3×3 kernel (stride 1, no padding) the output is 2×2,
# so $C$ is 4×16.

# %%
def conv_matrix(weight: torch.Tensor, in_size: int, **conv_args) -> torch.Tensor:
    """The matrix of conv2d(., weight, **conv_args) on a single-channel in_size x in_size image."""
    units = torch.eye(in_size * in_size).view(-1, 1, in_size, in_size)  # one unit image per pixel
    columns = F.conv2d(units, weight, **conv_args)                    # (in_pixels, 1, oh, ow)
    return columns.flatten(1).T                                        # (out_pixels, in_pixels)


g = torch.Generator().manual_seed(seed)
w = torch.randn(1, 1, 3, 3, generator=g)
x = torch.randn(1, 1, 4, 4, generator=g)
C = conv_matrix(w, 4)
print("C:", tuple(C.shape))
print("rows of C hold the kernel, shifted:\n", C[:2].view(2, 4, 4).round(decimals=2))

# %% tags=["nbval-check-output"]
def same(a, b):
    """Equal up to float rounding (the printed differences below are of order 1e-7)."""
    return torch.allclose(a.flatten(), b.flatten(), atol=1e-5)


y = F.conv2d(x, w)
print("C x == conv2d(x):", same(C @ x.flatten(), y))

# %% [markdown]
# The transpose $C^\top$ maps the 2×2 output space back to the 4×4 input space. That is
# exactly what `conv_transpose2d` computes with the *same* weight: it is the gradient of the
# convolution with respect to its input, which is why deep-learning libraries had it first.

# %% tags=["nbval-check-output"]
z = torch.randn(1, 1, 2, 2, generator=g)
up = F.conv_transpose2d(z, w)
print("conv_transpose2d output:", tuple(up.shape))
print("C^T z == conv_transpose2d(z):", same(C.T @ z.flatten(), up))
# and it is the input-gradient of the convolution:
xg = x.clone().requires_grad_(True)
F.conv2d(xg, w).backward(z)
print("d<conv2d(x), z>/dx == conv_transpose2d(z):", same(xg.grad, up))

# %%
print(f"largest differences: {(C @ x.flatten() - y.flatten()).abs().max():.1e}, "
      f"{(C.T @ z.flatten() - up.flatten()).abs().max():.1e}, {(xg.grad - up).abs().max():.1e}")

# %% [markdown]
# With stride 2 the picture is the same: $C$ skips every other position, and $C^\top$ spreads
# each input value over a 3×3 patch of an output twice as large. "Transposed convolution"
# restores the *shape*, not the values: $C^\top C \ne I$.
#
# This is why the older name *deconvolution* (Caffe's layer, and the FCN and DeconvNet papers)
# is a misnomer. In signal processing, deconvolution means undoing a convolution: recovering $x$
# from $Cx$. A transposed convolution does not do that; it is the transpose $C^\top$, the
# gradient of the (strided) convolution with respect to its input, and it gives back only the
# shape.
#
# There is a second way to compute the same $C^\top z$, which explains the other name,
# *fractionally strided convolution*: insert $s-1$ zeros between neighbouring input pixels, pad
# the result by $k-1-p$ on every side, and run an ordinary stride-1 convolution with the kernel
# flipped. Each step over the zero-filled map moves $1/s$ of an input pixel: a stride of $1/s$.
# It is a good way to picture what the layer does, but a wasteful way to compute it (most of the
# products are with inserted zeros), so libraries compute $C^\top$ directly.

# %% tags=["nbval-check-output"]
C2 = conv_matrix(w, 5, stride=2)
z2 = torch.randn(1, 1, 2, 2, generator=g)
up2 = F.conv_transpose2d(z2, w, stride=2)
print("stride 2: C", tuple(C2.shape), "| transposed output", tuple(up2.shape),
      "| C^T z == conv_transpose2d(z):", same(C2.T @ z2.flatten(), up2))

# %% [markdown]
# ## Output sizes
#
# For input size $n$, kernel $k$, stride $s$, padding $p$, dilation $d$ and output padding $a$:
#
# $$ n_\text{out} = (n - 1)\,s - 2p + d\,(k - 1) + a + 1 .$$
#
# Why `output_padding`? A stride-2 convolution maps sizes 7 and 8 to the same 4 (the formula
# of the convolution rounds down), so its transpose cannot know which to return; $a$ picks.
# The table checks the formula against PyTorch:

# %% tags=["nbval-check-output"]
def transposed_size(n, k, s=1, p=0, d=1, a=0):
    return (n - 1) * s - 2 * p + d * (k - 1) + a + 1


print(f"{'n':>3}{'k':>3}{'s':>3}{'p':>3}{'a':>3}  formula  torch")
for n, k, s, p, a in [(4, 3, 1, 0, 0), (4, 3, 2, 1, 0), (4, 3, 2, 1, 1), (7, 4, 2, 1, 0), (16, 64, 32, 16, 0), (10, 2, 2, 0, 0)]:
    layer = torch.nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=a)
    got = layer(torch.zeros(1, 1, n, n)).shape[-1]
    print(f"{n:>3}{k:>3}{s:>3}{p:>3}{a:>3}  {transposed_size(n, k, s, p, a=a):>7}  {got:>5}")
print("conv stride 2 of 7 and of 8:", F.conv2d(torch.zeros(1, 1, 7, 7), w, stride=2, padding=1).shape[-1],
      F.conv2d(torch.zeros(1, 1, 8, 8), w, stride=2, padding=1).shape[-1])

# %% [markdown]
# The row with $k=64, s=32, p=16$ is FCN-32s's final upsampling as most reimplementations (and
# segedu by default) write it: 32× larger, exactly. The FCN authors' Caffe model used the same
# kernel and stride with $p=0$, which gives $32n + 32$ pixels; a Caffe `Crop` layer then cut
# that output at offset 19 to line it up with the input, which their network had also padded by
# 100 pixels at the first convolution. [FCN](06_fcn) shows both geometries.
#
# ## Checkerboard artefacts
#
# Each input pixel of a transposed convolution paints a $k\times k$ patch, and neighbouring
# patches are $s$ apart. When $k$ is not a multiple of $s$ the patches overlap unevenly: some
# output pixels receive contributions from more inputs than their neighbours, and a constant
# input comes out as a grid (Odena, Dumoulin & Olah, "Deconvolution and Checkerboard
# Artifacts", Distill 2016). An all-ones kernel shows the overlap count directly:

# %%
flat = torch.ones(1, 1, 8, 8)
cases = {"k=3, s=2": (3, 2), "k=4, s=2": (4, 2), "k=5, s=2": (5, 2)}
fig, axes = plt.subplots(1, len(cases) + 1, figsize=(13, 3.4))
overlap = {}
for ax, (title, (k, s)) in zip(axes, cases.items()):
    out = F.conv_transpose2d(flat, torch.ones(1, 1, k, k), stride=s)[0, 0]
    inner = out[k:-k, k:-k]  # away from the border
    overlap[title] = (inner.min().item(), inner.max().item())
    ax.imshow(out, cmap="magma", vmin=0)
    ax.set_title(f"{title}: {inner.min():.0f} to {inner.max():.0f} overlaps")
    ax.axis("off")
resize = F.conv2d(F.interpolate(flat, scale_factor=2, mode="nearest"), torch.ones(1, 1, 3, 3) / 9, padding=1)[0, 0]
axes[-1].imshow(resize, cmap="magma", vmin=0)
axes[-1].set_title("resize, then 3x3 conv")
axes[-1].axis("off")
fig.suptitle("Transposed convolution of a constant image with an all-ones kernel")
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
for title, (lo, hi) in overlap.items():
    print(f"{title}: interior values from {lo:.0f} to {hi:.0f} -> {'even' if lo == hi else 'checkerboard'}")

# %% [markdown]
# ## Bilinear initialisation
#
# FCN initialises its upsampling layers to bilinear interpolation and lets training refine
# them. The kernel is the outer product of two triangle ("tent") filters; segedu's
# `bilinear_kernel(channels, kernel_size)` builds it, one per channel and no mixing between
# channels. With $k = 2s$ and padding $s/2$, the layer upsamples $s$ times and agrees with
# `F.interpolate(mode="bilinear", align_corners=False)` away from the border.

# %% tags=["nbval-check-output"]
factor = 4
kernel = bilinear_kernel(3, 2 * factor)
print("kernel:", tuple(kernel.shape), "centre row:", [round(v, 3) for v in kernel[0, 0, factor - 1].tolist()])
img = torch.rand(1, 3, 16, 16, generator=g)
learned = F.conv_transpose2d(img, kernel, stride=factor, padding=factor // 2)
reference = F.interpolate(img, scale_factor=factor, mode="bilinear", align_corners=False)
m = 2 * factor  # compare away from the border, where the layer has no neighbours to blend
print("output:", tuple(learned.shape), "| equals bilinear interpolation in the interior:",
      same(learned[..., m:-m, m:-m], reference[..., m:-m, m:-m]))

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
for ax, (im, title) in zip(axes, [(img, "input 16x16"), (learned, "transposed conv, bilinear init"), (reference, "F.interpolate bilinear")]):
    ax.imshow(im[0].permute(1, 2, 0).clamp(0, 1))
    ax.set_title(title)
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# * A convolution is a matrix $C$; `conv_transpose2d` with the same weight computes $C^\top$,
#   which is also the convolution's input gradient: every comparison printed `True`, with
#   differences at float rounding level. It is not an inverse ("deconvolution" is a misnomer),
#   and it equals inserting $s-1$ zeros between the input pixels, padding and running an
#   ordinary convolution.
# * The output size follows $(n-1)s - 2p + d(k-1) + a + 1$; `output_padding` resolves the
#   sizes a strided convolution maps together; the table matched PyTorch in every row.
# * Kernel sizes that are not a multiple of the stride overlap unevenly and print a
#   checkerboard on a flat input (the `k=3` and `k=5` rows); `k=4, s=2` and resize-then-conv
#   stay even.
# * A transposed convolution initialised with `bilinear_kernel` reproduces bilinear
#   interpolation in the interior, which is how FCN starts its upsampling layers.
#
# ## Exercises
#
# 1. Build $C$ for stride 2 and padding 1 on a 6×6 input and check $C^\top$ against
#    `conv_transpose2d(..., stride=2, padding=1, output_padding=1)`.
# 2. Which `output_padding` makes a stride-2 transposed convolution undo the shape of a
#    stride-2 convolution on a 9×9 input?
# 3. Show that `nn.Upsample(scale_factor=2)` followed by a 3×3 convolution has no checkerboard
#    for any kernel weights. Why?
