"""Run by test_train.py under torchrun: train, then save this rank's weights to OUT/rank{R}.pt."""

import json
import os
import sys

import torch

from ifan.train.config import TrainConfig, from_dict
from ifan.train.trainer import train

cfg = from_dict(TrainConfig, json.loads(sys.argv[1]))
out = sys.argv[2]
torch.set_num_threads(1)
result = train(cfg, os.path.join(out, "run"), device="cpu")
torch.save(result.model.state_dict(), os.path.join(out, f"rank{os.environ['RANK']}.pt"))
