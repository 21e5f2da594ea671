r"""Image-encoding throughput of ``stair-pyg prepare --images`` (decode + preprocess + forward).

Randomly initialised models with the layer sizes of real ones (the compute is the same as the
pretrained weights'; nothing is downloaded), saved to a temporary folder and loaded through
:func:`stair_pyg.data.images.load_image_encoder` exactly as ``prepare`` loads a user's model;
random 256x256 JPEG files are decoded from disk by :func:`stair_pyg.data.images.encode_images`.

    python benchmarks/bench_images.py                       # every size, 128 images each
    python benchmarks/bench_images.py --arch resnet18 --images 256 --batch-size 32 --threads 2

Prints images per second and items per hour for each architecture.
"""
from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

ARCHS = {
    # name: (what it is, builder)
    "resnet18": "ResNet-18 sizes (transformers ResNetModel, 11.2M parameters, 224x224)",
    "clip-b32": "CLIP ViT-B/32 vision tower sizes (CLIPVisionModel, 87.8M parameters, 224x224)",
    "vit-s16": "ViT-S/16 sizes (DINOv2-S-like Dinov2Model, 22M parameters, 224x224)",
}


def save_model(arch: str, folder: Path) -> Path:
    import torch
    from transformers import (BitImageProcessor, CLIPImageProcessor, CLIPVisionConfig,
                              CLIPVisionModel, ConvNextImageProcessor, Dinov2Config, Dinov2Model,
                              ResNetConfig, ResNetModel)

    torch.manual_seed(0)
    crop = {"height": 224, "width": 224}
    if arch == "resnet18":
        model = ResNetModel(ResNetConfig(embedding_size=64, hidden_sizes=[64, 128, 256, 512],
                                         depths=[2, 2, 2, 2], layer_type="basic"))
        processor = ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=224 / 256)
    elif arch == "clip-b32":
        model = CLIPVisionModel(CLIPVisionConfig(hidden_size=768, intermediate_size=3072,
                                                 num_hidden_layers=12, num_attention_heads=12,
                                                 image_size=224, patch_size=32))
        processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size=crop)
    elif arch == "vit-s16":
        model = Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12,
                                         num_attention_heads=6, image_size=224, patch_size=16))
        processor = BitImageProcessor(size={"shortest_edge": 224}, crop_size=crop)
    else:
        raise SystemExit(f"unknown --arch {arch!r}; one of {sorted(ARCHS)}")
    path = folder / arch
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def main() -> None:
    import torch

    from stair_pyg.data.images import benchmark_images, load_image_encoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), action="append")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.images} random 256x256 JPEGs, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for arch in args.arch or list(ARCHS):
            encoder = load_image_encoder(save_model(arch, Path(tmp)), device=args.device)
            r = benchmark_images(encoder, num_images=args.images, batch_size=args.batch_size)
            print(f"{arch:9s} {ARCHS[arch]}: {r['images_per_s']:.1f} images/s, "
                  f"{r['items_per_hour']:,.0f} items/hour ({r['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
