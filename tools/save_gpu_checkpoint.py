"""Write an nnU-Net-style checkpoint from tensors that live on a real GPU (run on a CUDA machine).

Used once on an NVIDIA H200 to produce tests/data/gpu_checkpoint_906_2d.pth: the network of
fixtures/plans/Dataset906_SmallImages (2d), moved to cuda:0, one SGD step (nnU-Net's optimizer:
momentum 0.99, nesterov) with a CUDA GradScaler, saved with the structure of
nnUNetTrainer.save_checkpoint. The pickle then records 'cuda:0' locations as torch writes them
on a GPU, which the tests read on a machine without one.

    python tools/save_gpu_checkpoint.py OUT.pth
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

ROOT = pathlib.Path(__file__).resolve().parent.parent
PLANS = ROOT / "fixtures" / "plans" / "Dataset906_SmallImages" / "nnUNetPlans.json"


def main(out: str) -> None:
    plans = json.loads(PLANS.read_text())
    dataset_json = json.loads((PLANS.parent / "dataset.json").read_text())
    arch = plans["configurations"]["2d"]["architecture"]
    kwargs = dict(arch["arch_kwargs"])
    kwargs["conv_op"] = torch.nn.Conv2d
    kwargs["norm_op"] = torch.nn.InstanceNorm2d
    kwargs["dropout_op"] = None
    kwargs["nonlin"] = torch.nn.LeakyReLU
    heads = len(dataset_json["labels"])
    assert torch.cuda.is_available(), "run this on a machine with a GPU"
    device = torch.device("cuda", 0)
    net = PlainConvUNet(input_channels=len(dataset_json["channel_names"]), num_classes=heads,
                        deep_supervision=True, **kwargs).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(2, 1, *plans["configurations"]["2d"]["patch_size"], device=device)
    with torch.autocast("cuda", dtype=torch.float16):
        loss = sum(o.float().mean() for o in net(x))
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    checkpoint = {
        "network_weights": net.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": scaler.state_dict(),
        "logging": {"mean_fg_dice": [np.float64(0.1)], "ema_fg_dice": [np.float64(0.1)],
                    "train_losses": [np.float64(loss.item())]},
        "_best_ema": np.float64(0.1),
        "current_epoch": 1,
        "init_args": {"plans": plans, "configuration": "2d", "fold": 0, "dataset_json": dataset_json,
                      "device": device},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1),
    }
    torch.save(checkpoint, out)
    print(f"saved {out} with torch {torch.__version__} on {torch.cuda.get_device_name(0)}")


if __name__ == "__main__":
    main(sys.argv[1])
