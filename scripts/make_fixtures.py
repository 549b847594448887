#!/usr/bin/env python3
"""Generate petal's PyTorch parity fixtures (tests/fixtures/) and the ImageNet class list.

Run once with PyTorch, torchvision, Pillow and scikit-learn installed (all from PyPI):

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch torchvision scikit-learn
    /tmp/fx/bin/python scripts/make_fixtures.py

Everything is seeded; the outputs are small and committed. Tensors are raw little-endian
float32 (`*.f32`) or uint8 (`*.u8`); `manifest.json` records every shape and the
versions used.
"""
import json
import os
import re
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import transforms
from torchvision.models import DenseNet, mobilenet_v2
from torchvision.models._meta import _IMAGENET_CATEGORIES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")
manifest = {
    "generator": "scripts/make_fixtures.py",
    "torch": torch.__version__,
    "torchvision": torchvision.__version__,
    "tensors": {},
}


def save(name, array):
    array = np.ascontiguousarray(array)
    if array.dtype == np.uint8:
        fname = f"{name}.u8"
    else:
        array = array.astype("<f4")
        fname = f"{name}.f32"
    array.tofile(os.path.join(OUT, fname))
    manifest["tensors"][name] = {"file": fname, "shape": list(array.shape)}


def randomise_batchnorm(model, gen):
    """Non-trivial BatchNorm affine parameters and running statistics."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) * 1.0 + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.num_batches_tracked.fill_(7)


def legacy_densenet_keys(state_dict):
    """The 2017 torchvision spelling: denselayerN.norm1.weight -> denselayerN.norm.1.weight."""
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    out = {}
    for k, v in state_dict.items():
        m = pattern.match(k)
        out[f"{m.group(1)}.{m.group(2)}" if m else k] = v
    return out


class ClassifierNew(nn.Module):
    """The seed article's head, verbatim (avg-pool then max-pool, BN, dropout, 2 linears)."""

    def __init__(self, inp=2208, h1=1024, out=102, d=0.35):
        super().__init__()
        self.ap = nn.AdaptiveAvgPool2d((1, 1))
        self.mp = nn.AdaptiveMaxPool2d((1, 1))
        self.bn0 = nn.BatchNorm1d(inp * 2, eps=1e-05, momentum=0.1, affine=True)
        self.dropout0 = nn.Dropout(d)
        self.fc1 = nn.Linear(inp * 2, h1)
        self.bn1 = nn.BatchNorm1d(h1, eps=1e-05, momentum=0.1, affine=True)
        self.dropout1 = nn.Dropout(d)
        self.fc2 = nn.Linear(h1, out)

    def forward(self, x):
        x = torch.cat((self.ap(x), self.mp(x)), dim=1).flatten(1)
        x = self.dropout0(self.bn0(x))
        x = F.relu(self.fc1(x))
        x = self.dropout1(self.bn1(x))
        return self.fc2(x)


def densenet_fixtures(gen):
    model = DenseNet(growth_rate=8, block_config=(2, 3, 2), num_init_features=16, bn_size=2, num_classes=10)
    randomise_batchnorm(model, gen)
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        features = F.relu(model.features(x))
        logits = model(x)
    sd = model.state_dict()
    torch.save(sd, os.path.join(OUT, "densenet_tiny.pth"))  # zip format
    torch.save(legacy_densenet_keys(sd), os.path.join(OUT, "densenet_tiny_legacy.pth"),
               _use_new_zipfile_serialization=False)
    save("densenet_tiny_input", x.numpy())
    save("densenet_tiny_features", features.numpy())
    save("densenet_tiny_logits", logits.numpy())
    manifest["densenet_tiny"] = {"growth_rate": 8, "block_config": [2, 3, 2], "num_init_features": 16,
                                 "bn_size": 2, "num_classes": 10,
                                 "num_params": sum(p.numel() for p in model.parameters())}

    # The seed recipe: DenseNet features + the seed's concat-pool head.
    head = ClassifierNew(inp=model.classifier.in_features, h1=32, out=5)
    randomise_batchnorm(head, gen)
    head.eval()
    with torch.no_grad():
        seed_logits = head(features)
    seed_sd = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    seed_sd.update({f"classifier.{k}": v for k, v in head.state_dict().items()})
    torch.save(seed_sd, os.path.join(OUT, "densenet_tiny_seedhead.pth"))
    save("densenet_tiny_seedhead_logits", seed_logits.numpy())


def format_fixtures():
    """Small files in formats the Rust encoders cannot write (CMYK JPEG, palette PNG), with
    the RGB values Pillow's convert("RGB") gives them."""
    cmyk = Image.new("CMYK", (16, 16), (0, 200, 200, 30))
    cmyk.save(os.path.join(OUT, "cmyk.jpg"), quality=95)
    pal = Image.new("P", (16, 16), 3)
    pal.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 200, 100, 50] + [0] * (256 * 3 - 12))
    pal.save(os.path.join(OUT, "palette.png"))
    manifest["formats"] = {
        "cmyk.jpg": list(Image.open(os.path.join(OUT, "cmyk.jpg")).convert("RGB").getpixel((8, 8))),
        "palette.png": list(Image.open(os.path.join(OUT, "palette.png")).convert("RGB").getpixel((8, 8))),
    }


def oxford_fixtures():
    """A miniature Oxford-102 native layout: 9 images, labels 1..3, official-style splits.

    Written by scipy.io.savemat (MATLAB v5) like the real imagelabels.mat / setid.mat:
    `labels` uncompressed, the split ids compressed, both as 1xN doubles.
    """
    import scipy.io
    labels = np.array([[1, 2, 3, 1, 2, 3, 1, 2, 3]], dtype=np.float64)
    scipy.io.savemat(os.path.join(OUT, "oxford_imagelabels.mat"), {"labels": labels}, do_compression=False)
    scipy.io.savemat(os.path.join(OUT, "oxford_setid.mat"),
                     {"trnid": np.array([[1, 2, 3]], dtype=np.float64),
                      "valid": np.array([[4, 5, 6]], dtype=np.float64),
                      "tstid": np.array([[7, 8, 9]], dtype=np.float64)}, do_compression=True)


def eval_photo(resize=256, crop=224):
    """The photo fixture through torchvision's ImageNet eval transform, as a [1, 3, crop, crop] batch."""
    photo = Image.open(os.path.join(OUT, "photo.png")).convert("RGB")
    t = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor(),
                            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return t(photo).unsqueeze(0)


def mobilenet_fixtures(gen):
    model = mobilenet_v2(weights=None, width_mult=0.25, num_classes=10)
    randomise_batchnorm(model, gen)
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        logits = model(x)
    sd = model.state_dict()
    torch.save(sd, os.path.join(OUT, "mobilenet_v2_w025.pth"))
    torch.save(sd, os.path.join(OUT, "mobilenet_v2_w025_legacy.pth"), _use_new_zipfile_serialization=False)
    save("mobilenet_v2_w025_input", x.numpy())
    save("mobilenet_v2_w025_logits", logits.numpy())
    # End to end, as `petal predict` runs it: photo.png -> eval transform -> logits.
    with torch.no_grad():
        save("mobilenet_v2_w025_photo_logits", model(eval_photo()).numpy())
    manifest["mobilenet_v2_w025"] = {"width_mult": 0.25, "num_classes": 10,
                                     "num_params": sum(p.numel() for p in model.parameters())}


def preprocessing_fixtures():
    """torchvision's eval transform on a real photo (scikit-learn's china.jpg, CC-BY)."""
    import sklearn.datasets
    src = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
    photo = Image.open(src).convert("RGB").crop((100, 60, 500, 360))  # 400 x 300
    photo.save(os.path.join(OUT, "photo.png"))
    photo = Image.open(os.path.join(OUT, "photo.png")).convert("RGB")
    for name, resize, crop in [("eval_256_224", 256, 224), ("eval_128_112", 128, 112),
                               ("eval_300_224", 300, 224), ("eval_400_320", 400, 320)]:
        t = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop)])
        save(name, np.asarray(t(photo), dtype=np.uint8))
    full = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                               transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    save("eval_256_224_normalised", full(photo).numpy())


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    preprocessing_fixtures()
    format_fixtures()
    oxford_fixtures()
    densenet_fixtures(gen)
    mobilenet_fixtures(gen)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    classes = os.path.join(ROOT, "crates", "core", "src", "imagenet_classes.txt")
    with open(classes, "w") as f:
        f.write("\n".join(_IMAGENET_CATEGORIES) + "\n")
    print("wrote", OUT, "and", classes, file=sys.stderr)


if __name__ == "__main__":
    main()
