"""Training throughput of the ResNet-50 re-id model; prints figures, asserts nothing.

    python bench/train_bench.py [--steps 6] [--batch-sizes 16,32,64] [--height 256 --width 128]

Measures forward + backward + SGD step on random 256x128 batches (the data pipeline is left out:
it is the model that costs), for each batch size, with and without mixed precision and
channels_last (both only on a GPU). The reference is the study this project grew from: 60 epochs
of Market-1501 (12,936 training images) at batch 16 in 88 minutes on an RTX 3060, about 147
images/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

STUDY_IMAGES_PER_S = 12936 * 60 / (88 * 60)


def images_per_second(batch: int, steps: int, device: torch.device, amp: bool, channels_last: bool,
                      height: int, width: int) -> float:
    from trainer.losses import LossWeights, ReidLoss
    from trainer.model import build_model

    model, _ = build_model(751, "random")
    criterion = ReidLoss(LossWeights(), 751, 2048)
    model.to(device).train()
    criterion.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([*model.parameters(), *criterion.parameters()], lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    images = torch.randn(batch, 3, height, width, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.arange(batch, device=device) // 4  # P x K batches, as the triplet loss wants

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits, features = model(images)
            loss, _ = criterion(logits, features, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    step()  # warm-up: allocations, cuDNN autotuning
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {name}; ResNet-50 + BNNeck, CE + batch-hard triplet, "
          f"{args.height}x{args.width}, {args.steps} timed steps")
    variants = [(False, False)] + ([(True, False), (True, True)] if device.type == "cuda" else [])
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for amp, channels_last in variants:
            rate = images_per_second(batch, args.steps, device, amp, channels_last, args.height, args.width)
            label = ("fp32" if not amp else "AMP") + (" + channels_last" if channels_last else "")
            epoch_min = 12936 / rate / 60
            print(f"batch {batch:3d}  {label:22s} {rate:8.1f} images/s  (Market-1501: {epoch_min:5.1f} min per "
                  f"epoch, {epoch_min:5.1f} h for 60 epochs)")
    print(f"study reference: RTX 3060, batch 16, 60 epochs in 88 min = {STUDY_IMAGES_PER_S:.0f} images/s")
    if device.type == "cpu":
        print("mixed precision and channels_last are GPU features: measured only when a GPU is present")


if __name__ == "__main__":
    main()
