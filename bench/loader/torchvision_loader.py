#!/usr/bin/env python3
"""torchvision_loader.py: the baseline for bench_loader, timm's training input pipeline in PyTorch.

PIL decode + convert("RGB") (torchvision's ImageFolder) -> RandomResizedCrop(224) with bilinear or bicubic
picked at random (timm's interpolation "random") -> RandomHorizontalFlip -> [RandAugment] -> uint8 tensor
(PILToTensor: no float conversion, as timm's fast collate), through a DataLoader with 1, 2 and all
workers, on the folder bench_loader made. RandAugment is timm's rand-m9-mstd0.5-inc1 when timm is
installed (the op set GKAVision implements), else torchvision.transforms.RandAugment(2, 9).

Timing matches bench_loader: from the first batch to the end of the third epoch, with persistent workers, so
worker start-up is not counted. (At many workers torch still gains a little: the batches its workers finish
while the first one is awaited are not timed, up to one batch per worker.) Prints CSV lines "torchvision,<plain|randaugment>,<workers>,<images/s>" (and a note on stderr).
Exit status 3 when torch or torchvision cannot be imported.
"""
import argparse
import os
import sys
import time


def worker_init(_):
    import torch

    torch.set_num_threads(1)  # one core per worker, like one loader thread


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/gkav_bench_jpegs")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    try:
        import torch
        from torch.utils.data import DataLoader
        from torchvision import datasets, transforms
        from torchvision.transforms import InterpolationMode
    except ImportError as e:
        print(f"torchvision not available ({e})", file=sys.stderr)
        sys.exit(3)

    rrc = transforms.RandomChoice(
        [
            transforms.RandomResizedCrop(224, interpolation=InterpolationMode.BILINEAR),
            transforms.RandomResizedCrop(224, interpolation=InterpolationMode.BICUBIC),
        ]
    )
    try:
        import timm.data.auto_augment as aa
        from PIL import Image

        # timm's PosterizeIncreasing keeps 0 bits at magnitude 10 (reachable with mstd 0.5); Pillow 11+ refuses 0,
        # older Pillow returned a black image, which is what this does.
        original = aa.NAME_TO_OP["PosterizeIncreasing"]

        def posterize(img, bits_to_keep, **kw):
            return Image.new(img.mode, img.size) if bits_to_keep <= 0 else original(img, bits_to_keep, **kw)

        for name in ("PosterizeIncreasing", "Posterize"):
            aa.NAME_TO_OP[name] = posterize
        ra = aa.rand_augment_transform(
            "rand-m9-mstd0.5-inc1", dict(translate_const=int(224 * 0.45), img_mean=(124, 116, 104))
        )
        ra_name = "timm rand-m9-mstd0.5-inc1"
    except ImportError:
        ra = transforms.RandAugment(num_ops=2, magnitude=9)
        ra_name = "torchvision RandAugment(2, 9) (timm not installed)"
    print(f"torch {torch.__version__}; RandAugment: {ra_name}", file=sys.stderr)

    pipelines = {
        "plain": transforms.Compose([rrc, transforms.RandomHorizontalFlip(), transforms.PILToTensor()]),
        "randaugment": transforms.Compose([rrc, transforms.RandomHorizontalFlip(), ra, transforms.PILToTensor()]),
    }
    cores = os.cpu_count() or 1
    counts = sorted({1, min(2, cores), cores})
    for mode, tf in pipelines.items():
        ds = datasets.ImageFolder(args.dir, transform=tf)
        for workers in counts:
            dl = DataLoader(
                ds,
                batch_size=args.batch,
                shuffle=True,
                num_workers=workers,
                drop_last=True,
                worker_init_fn=worker_init,
                prefetch_factor=2,
                persistent_workers=True,
            )
            t0, n = None, 0
            for _ in range(args.epochs):
                for images, _ in dl:
                    if t0 is None:
                        t0 = time.perf_counter()  # the first batch: start-up is over
                    else:
                        n += images.shape[0]
            dt = time.perf_counter() - t0
            print(f"torchvision,{mode},{workers},{n / dt:.1f}", flush=True)


if __name__ == "__main__":
    main()
