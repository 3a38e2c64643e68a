"""Training and evaluation: config, trainer, checkpoints, schedules, run directories."""
from .config import TrainConfig
from .evaluate import evaluate, load_model, predict
from .trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "evaluate", "load_model", "predict", "train"]
