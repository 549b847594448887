#!/usr/bin/env python3
"""petal's fine-tune recipe (`petal train`) in PyTorch/torchvision/timm, for side-by-side
accuracy runs on the same ImageFolder (DIR/train/<class>/*, DIR/valid/<class>/*).

The recipe, as petal runs it:
- torchvision backbone `features` with ImageNet weights from a local .pth + petal's seed
  concat-pool head (avg ‖ max → BN → Dropout → Linear(1024) → ReLU → BN → Dropout → Linear),
  dropout 0.35 in both blocks;
- phase 1 (`--freeze-epochs`): the backbone frozen except its BatchNorm layers (fastai's
  `train_bn`), every trainable parameter at `--lr`; phase 2 (`--epochs`): everything
  trainable, a new optimizer, discriminative learning rates over petal's layer groups
  (MobileNetV2: features.0-8, features.9-18, head; DenseNet: its blocks) as fastai's
  `slice(lr / lr_mult, lr)`;
- AdamW (betas 0.9/0.99, eps 1e-5, wd 0.01 not on BatchNorm or biases), per step: linear
  warm-up from lr/25 over 10 % of the phase, then cosine to 0;
- images down-scaled at load to a shorter side of at most `--max-shorter-side`; training:
  RandomResizedCrop(size, (0.08, 1)) → RandomRotation(25) → ColorJitter(0.2, 0.2, 0.2, 0.05)
  → flip → Normalize (petal composes the same draws into one map; its colour order is fixed);
  validation: Resize(ceil(size·8/7)) → CenterCrop(size);
- the last partial batch of an epoch dropped; levers as timm implements them: `--mixup`,
  `--cutmix`, `--mix-prob`, `--mix-switch-prob` (timm.data.Mixup + SoftTargetCrossEntropy),
  `--label-smoothing`, `--ema` (timm.utils.ModelEmaV3, warm-up on; validated with the EMA).

Prints one JSON line per epoch and a final line with `final_top1` / `best_top1`.
"""
import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import transforms as T

from train_step import Classifier  # features + petal's seed head, shared with the step bench

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def load_model(arch, weights, classes):
    """The step bench's model (torchvision `features` + the seed head) with the ImageNet
    weights of `features` read from a local torchvision .pth."""
    model = Classifier(arch, classes)
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    model.features.load_state_dict(
        {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")})
    return model


def groups(model):
    """petal's layer groups (input side first, the head last)."""
    f = list(model.features.children())
    if len(f) == 19:  # MobileNetV2: stem + 17 blocks + last conv
        return [nn.ModuleList(f[:9]), nn.ModuleList(f[9:]), model.head]
    return [model.features, model.head]


def is_bn(m):
    return isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))


def param_groups(model, lrs, wd):
    """One (decay, no-decay) pair of AdamW groups per layer group; BatchNorm and biases
    without weight decay."""
    out = []
    for g, lr in zip(groups(model), lrs):
        bn_ids = {id(p) for m in g.modules() if is_bn(m) for p in m.parameters()}
        decay, no_decay = [], []
        for p in g.parameters():
            if not p.requires_grad:
                continue
            (no_decay if id(p) in bn_ids or p.ndim == 1 else decay).append(p)
        out += [{"params": decay, "weight_decay": wd, "peak": lr},
                {"params": no_decay, "weight_decay": 0.0, "peak": lr}]
    return [g for g in out if g["params"]]


def lr_at(t, total, peak, warmup=0.1):
    w = min(round(warmup * total), total - 1)
    start = peak / 25.0
    if t < w:
        return start + (peak - start) / w * t
    x = (t - w) / (total - w)
    return 0.5 * peak * (1 + math.cos(math.pi * x))


class Folder(torch.utils.data.Dataset):
    def __init__(self, root, classes, tf, max_short):
        self.items = [(p, i) for i, c in enumerate(classes)
                      for p in sorted((root / c).iterdir()) if p.is_file()]
        self.tf = tf
        self.cache = {}
        self.max_short = max_short

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if i not in self.cache:
            img = Image.open(self.items[i][0]).convert("RGB")
            w, h = img.size
            s = min(w, h)
            if s > self.max_short:
                k = self.max_short / s
                img = img.resize((max(1, round(w * k)), max(1, round(h * k))), Image.BILINEAR)
            self.cache[i] = img
        return self.tf(self.cache[i]), self.items[i][1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", required=True, help="torchvision .pth of --arch")
    ap.add_argument("--arch", default="mobilenet_v2")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--max-shorter-side", type=int, default=146)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--freeze-epochs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lr-mult", type=float, default=100.0)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--mixup", type=float, default=0.0)
    ap.add_argument("--cutmix", type=float, default=0.0)
    ap.add_argument("--mix-prob", type=float, default=1.0)
    ap.add_argument("--mix-switch-prob", type=float, default=0.5)
    ap.add_argument("--ema", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    classes = sorted(p.name for p in (a.data / "train").iterdir() if p.is_dir())
    norm = T.Normalize(MEAN, STD)
    train_tf = T.Compose([
        T.RandomResizedCrop(a.image_size, scale=(0.08, 1.0)), T.RandomRotation(25),
        T.ColorJitter(0.2, 0.2, 0.2, 0.05), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    eval_tf = T.Compose([T.Resize(-(-a.image_size * 8 // 7)), T.CenterCrop(a.image_size),
                         T.ToTensor(), norm])
    valid_dir = a.data / ("valid" if (a.data / "valid").is_dir() else "val")
    train = Folder(a.data / "train", classes, train_tf, a.max_shorter_side)
    valid = Folder(valid_dir, classes, eval_tf, a.max_shorter_side)
    g = torch.Generator().manual_seed(a.seed)
    train_dl = torch.utils.data.DataLoader(train, a.batch_size, shuffle=True, drop_last=True,
                                           generator=g)
    valid_dl = torch.utils.data.DataLoader(valid, 64)
    model = load_model(a.arch, a.weights, len(classes))

    mixer = None
    if (a.mixup > 0 or a.cutmix > 0) and a.mix_prob > 0:
        from timm.data import Mixup
        mixer = Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, prob=a.mix_prob,
                      switch_prob=a.mix_switch_prob, label_smoothing=a.label_smoothing,
                      num_classes=len(classes))
    ema = None
    if a.ema > 0:
        from timm.utils import ModelEmaV3
        ema = ModelEmaV3(model, decay=a.ema, use_warmup=True)

    def evaluate(m):
        m.eval()
        correct = n = 0
        loss = 0.0
        with torch.no_grad():
            for x, y in valid_dl:
                z = m(x)
                loss += F.cross_entropy(z, y, reduction="sum").item()
                correct += (z.argmax(1) == y).sum().item()
                n += len(y)
        return loss / n, correct / n

    step = 0
    best = 0.0
    total_epochs = a.freeze_epochs + a.epochs
    for phase, epochs in [("frozen", a.freeze_epochs), ("unfrozen", a.epochs)]:
        if epochs == 0:
            continue
        frozen = phase == "frozen"
        for p in model.features.parameters():
            p.requires_grad = not frozen
        if frozen:
            for m in model.features.modules():
                if is_bn(m):
                    for p in m.parameters():
                        p.requires_grad = True
        n_groups = len(groups(model))
        factors = [1.0] * n_groups if frozen else [
            a.lr_mult ** (-(n_groups - 1 - i) / (n_groups - 1)) for i in range(n_groups)]
        opt = torch.optim.AdamW(param_groups(model, [a.lr * f for f in factors], a.wd),
                                lr=a.lr, betas=(0.9, 0.99), eps=1e-5)
        total = epochs * len(train_dl)
        t = 0
        for e in range(epochs):
            model.train()
            t0 = time.time()
            tl = tn = 0
            for x, y in train_dl:
                for grp in opt.param_groups:
                    grp["lr"] = lr_at(t, total, grp["peak"])
                if mixer is not None:
                    x, target = mixer(x, y)
                    loss = torch.sum(-target * F.log_softmax(model(x), -1), -1).mean()
                else:
                    loss = F.cross_entropy(model(x), y, label_smoothing=a.label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                t += 1
                if ema is not None:
                    ema.update(model, step=step)
                tl += loss.item() * len(y)
                tn += len(y)
            vl, top1 = evaluate(ema.module if ema is not None else model)
            best = max(best, top1)
            print(json.dumps({"epoch": e + 1 + (0 if frozen else a.freeze_epochs),
                              "phase": phase, "train_loss": tl / tn, "valid_loss": vl,
                              "valid_top1": top1, "time_s": time.time() - t0}), flush=True)
    print(json.dumps({"final_top1": top1, "best_top1": best, "epochs": total_epochs,
                      "seed": a.seed, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
