"""Work done inside a ``torchrun`` launch for test_distributed.py (not collected by pytest).

    python -m torch.distributed.run --standalone --nproc_per_node N distributed_worker.py TASK OUT [ARGS]

``metric OUT``: every process scores its shard of fixed random predictions; the all-reduced scores
go to ``OUT/metric-rank<R>.pt``.
``step OUT DATA BATCH``: one optimiser step of a model without batch norm at per-process batch
``BATCH``; rank 0 writes the weights to ``OUT/weights.pt``.
"""
import sys
from pathlib import Path

import torch

from segedu import metrics, models
from segedu.engine import TrainConfig, Trainer, distributed

NUM_CLASSES, IMAGES = 5, 7  # 7 images over 2 processes: shards of unequal size


def fixed_predictions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(IMAGES, NUM_CLASSES, 12, 10, generator=g)
    target = torch.randint(0, NUM_CLASSES, (IMAGES, 12, 10), generator=g)
    target[0, :3] = 255  # some ignored pixels
    return logits, target


def metric(out: Path) -> None:
    torch.distributed.init_process_group("gloo")
    logits, target = fixed_predictions()
    shard = list(distributed.ShardSampler(IMAGES))
    result = {}
    for per_image in (False, True):
        scores = metrics.SegMetrics(NUM_CLASSES, per_image=per_image)
        for i in shard:  # one image per update, as a loader of batch 1 would
            scores.update(logits[i:i + 1], target[i:i + 1])
        result[per_image] = {"shard": shard, **scores.all_reduce().compute(), "confusion": scores.confusion.clone()}
    torch.save(result, out / f"metric-rank{distributed.rank()}.pt")
    torch.distributed.destroy_process_group()


class NoNormNet(torch.nn.Module):
    """Two convolutions and no batch norm: per-sample gradients that simply add up."""

    def __init__(self, num_classes=11, *, width=1.0):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, num_classes, 1))

    def forward(self, x):
        return self.body(x)


class BNNet(torch.nn.Module):
    """A convolution, batch norm and a classifier, no dropout: the smallest model with the buffers
    (float running statistics, an integer batch count) that weight averaging must handle (the
    trainer's and the averaging tests use it; defined here with NoNormNet, the tests' other net)."""

    def __init__(self, num_classes=11, *, width=1.0):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                        torch.nn.ReLU(), torch.nn.Conv2d(8, num_classes, 1))

    def forward(self, x):
        return self.body(x)


def step(out: Path, data: str, batch: int) -> None:
    if "test_nonorm" not in models.available():
        models.register("test_nonorm")(NoNormNet)
    config = TrainConfig(model="test_nonorm", model_options={}, data_dir=data, profile="smoke", image_size=32,
                         epochs=1, max_steps=1, batch_size=batch, num_workers=0, device="cpu", val_split=None,
                         scheduler="constant", optimizer="adamw", lr=1e-2, out=str(out / "run"))
    trainer = Trainer(config)
    trainer.fit()
    if trainer.rank == 0:
        torch.save({"weights": trainer.model.state_dict(), "world_size": trainer.world_size, "step": trainer.step},
                   out / "weights.pt")
    distributed.cleanup()


if __name__ == "__main__":
    task, target = sys.argv[1], Path(sys.argv[2])
    if task == "metric":
        metric(target)
    else:
        step(target, sys.argv[3], int(sys.argv[4]))
