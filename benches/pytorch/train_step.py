#!/usr/bin/env python3
"""The fine-tune step of `petal bench train-step`, in PyTorch/torchvision.

One step: augmentation of uint8 images on the training device (torchvision.transforms.v2,
per sample: RandomResizedCrop, RandomRotation 25, ColorJitter, horizontal flip, Normalize)
-> forward (torchvision `features` + petal's seed concat-pool head) -> cross-entropy ->
backward -> AdamW (lr 2e-3, wd 0.01 on weights only, betas (0.9, 0.99), eps 1e-5).
Prints the median step after warm-up (the device synchronised: the loss is read back, and
on CUDA torch.cuda.synchronize()), as JSON with the fields of petal's bench:
`ips`, `step_ms`, `peak_mem_bytes` (+ descriptive fields).

peak_mem_bytes: torch.cuda.max_memory_allocated() on CUDA (over the timed steps);
on the CPU the process's peak RSS (ru_maxrss), which includes the Python runtime.
"""
import argparse
import json
import os
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.transforms import v2

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


class ConcatPoolHead(nn.Module):
    """petal's seed head: avg ‖ max pool -> BN -> Dropout -> Linear -> ReLU -> BN -> Dropout
    -> Linear."""

    def __init__(self, features, classes, hidden=1024, p=0.35):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(2 * features), nn.Dropout(p), nn.Linear(2 * features, hidden),
            nn.ReLU(inplace=True), nn.BatchNorm1d(hidden), nn.Dropout(p),
            nn.Linear(hidden, classes))

    def forward(self, x):
        x = torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], 1)
        return self.body(torch.flatten(x, 1))


class Classifier(nn.Module):
    def __init__(self, arch, classes):
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        if isinstance(net, torchvision.models.ResNet):
            # ResNet/ResNeXt/Wide ResNet have no `features`: everything before the avgpool.
            self.features = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                          net.layer1, net.layer2, net.layer3, net.layer4)
        else:
            # DenseNet, MobileNetV2/V3, EfficientNet (v1, v2) and ConvNeXt.
            self.features = net.features
        # torchvision's DenseNet applies the final ReLU in forward(), after `features`.
        self.relu = arch.startswith("densenet")
        with torch.no_grad():
            n = self.features(torch.zeros(1, 3, 64, 64)).shape[1]
        self.head = ConcatPoolHead(n, classes)

    def forward(self, x):
        x = self.features(x)
        if self.relu:
            x = F.relu(x, inplace=True)
        return self.head(x)


def conv_kind(weight_shape, stride, groups):
    """petal's label of a convolution: `conv 1×1`, `conv 3×3/2`, `depthwise 5×5`, `grouped 3×3`."""
    o, cg, kh, kw = weight_shape
    family = "conv" if groups == 1 else ("depthwise" if cg == 1 and o == groups else "grouped")
    s = stride if isinstance(stride, (list, tuple)) else [stride, stride]
    suffix = "" if list(s) == [1, 1] else (f"/{s[0]}" if s[0] == s[1] else f"/{s[0]}×{s[1]}")
    return f"{family} {kh}×{kw}{suffix}"


def profile_ops(step, runs):
    """`runs` steps under torch.profiler: wall ms per step of the top-level ATen op of each
    layer kind (inclusive times of ops that do not nest in one another), in petal's labels
    where petal has a kernel for the op (convolutions by kernel / stride / groups; PyTorch's
    one convolution_backward call is both of petal's gradients)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t = time.perf_counter()
        for _ in range(runs):
            step()
        step_ms = (time.perf_counter() - t) * 1e3 / runs
    totals = {}

    def add(label, us):
        n, t = totals.get(label, (0, 0.0))
        totals[label] = (n + 1, t + us)

    for e in prof.events():
        name, args = e.name, getattr(e, "concrete_inputs", None) or []
        if name == "aten::convolution":
            add(conv_kind(e.input_shapes[1], args[3] if len(args) > 3 else 1,
                          args[8] if len(args) > 8 else 1) + " forward", e.cpu_time_total)
        elif name == "aten::convolution_backward":
            add(conv_kind(e.input_shapes[2], args[4] if len(args) > 4 else 1,
                          args[9] if len(args) > 9 else 1) + " backward (input + weight)",
                e.cpu_time_total)
        elif name == "aten::batch_norm":
            add("batchnorm forward", e.cpu_time_total)
        elif name == "aten::native_batch_norm_backward":
            add("batchnorm backward", e.cpu_time_total)
        elif name in ("aten::relu", "aten::relu_"):
            add("relu forward", e.cpu_time_total)
        elif name == "aten::threshold_backward":
            add("relu backward", e.cpu_time_total)
        elif name == "aten::cat":
            add("concatenation forward", e.cpu_time_total)
        elif "pool" in name and name.startswith("aten::") and not name.endswith("_out"):
            add(name.removeprefix("aten::"), e.cpu_time_total)
        elif name.startswith("Optimizer.step"):
            add("optimizer step", e.cpu_time_total)
    ops = [{"op": k, "calls_per_step": n / runs, "ms_per_step": us / 1e3 / runs}
           for k, (n, us) in totals.items()]
    ops.sort(key=lambda o: -o["ms_per_step"])
    return {"step_ms": step_ms, "ops": ops}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="densenet121",
                    help="densenet121|161|169|201, resnet18|34|50|101|152, resnext50_32x4d, "
                         "resnext101_32x8d|64x4d, wide_resnet50_2|101_2, efficientnet_b0..b7, "
                         "efficientnet_v2_s|m|l, convnext_tiny|small|base|large, mobilenet_v2, "
                         "mobilenet_v3_large|small (any torchvision.models builder of these "
                         "families)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--precision", default="f32", choices=["f32", "f16"],
                    help="f16: torch.autocast(float16) + GradScaler (CUDA only)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--classes", type=int, default=102)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--tf32", default="default", choices=["default", "on", "off"],
                    help="CUDA TF32: PyTorch's defaults (cuDNN convs on, matmul off), all on, "
                         "or all off")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--profile-ops", action="store_true",
                    help="also run the timed steps under torch.profiler and report ms per "
                         "step by op kind (petal's `bench train-step --profile-ops` labels)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if a.precision == "f16" and not cuda:
        raise SystemExit("--precision f16 needs --device cuda")
    if cuda and a.tf32 != "default":
        on = a.tf32 == "on"
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    if cuda:
        torch.backends.cudnn.benchmark = True

    model = Classifier(a.arch, a.classes).to(dev).train()
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=mf)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=2e-3, betas=(0.9, 0.99), eps=1e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=a.precision == "f16")

    aug = v2.Compose([
        v2.RandomResizedCrop(a.image_size, scale=(0.08, 1.0), antialias=True),
        v2.RandomRotation(25),
        v2.ColorJitter(0.2, 0.2, 0.2, 0.05),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ])
    # Sources: uint8 500x375 images, already on the device (petal uploads its packed
    # batch each step; here the upload is left out, in PyTorch's favour).
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (a.batch, 3, 375, 500), dtype=torch.uint8, generator=g).to(dev)
    labels = (torch.arange(a.batch) % a.classes).to(dev)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step():
        x = torch.stack([aug(images[i]) for i in range(a.batch)]).contiguous(memory_format=mf)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=a.precision == "f16"):
            loss = F.cross_entropy(model(x), labels)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        loss.item()
        sync()

    for _ in range(a.warmup):
        step()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    ms = statistics.median(times)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        peak_src = "torch.cuda.max_memory_allocated (timed steps)"
        dev_name = torch.cuda.get_device_name(dev)
        tf32 = {"cudnn_conv": torch.backends.cudnn.allow_tf32,
                "matmul": torch.backends.cuda.matmul.allow_tf32}
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak_src = "process peak RSS (ru_maxrss), Python runtime included"
        dev_name = "cpu"
        tf32 = None
    out = {
        "engine": "pytorch",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "arch": a.arch,
        "device": dev_name,
        "precision": a.precision if a.precision == "f16" else "f32",
        "tf32": tf32,
        "channels_last": a.channels_last,
        "batch": a.batch,
        "image_size": a.image_size,
        "classes": a.classes,
        "threads": torch.get_num_threads(),
        "source": "random uint8 500x375 on the device, transforms.v2 per sample",
        "runs": a.runs,
        "warmup": a.warmup,
        "ips": a.batch / (ms / 1e3),
        "step_ms": ms,
        "peak_mem_bytes": peak,
        "peak_mem_source": peak_src,
    }
    if a.profile_ops:
        out["op_profile"] = profile_ops(step, a.runs)
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"pytorch {a.arch} batch {a.batch} at {a.image_size}^2 on {dev_name}: "
              f"{ms:.1f} ms/step, {out['ips']:.2f} images/s, peak {peak / 2**20:.1f} MiB")
        if a.profile_ops:
            p = out["op_profile"]
            print(f"  op profile (ms per step of {p['step_ms']:.1f} ms):")
            for o in p["ops"]:
                print(f"    {o['op']:<34} {o['ms_per_step']:>8.2f} ms  {o['calls_per_step']:>6.1f} calls")


if __name__ == "__main__":
    main()
