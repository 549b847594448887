#!/usr/bin/env python3
"""Generate petal's PyTorch parity fixtures for the torchvision CNN zoo (tests/fixtures/zoo/).

Four families, each built from torchvision's own classes so the fixtures are torchvision-exact:
ResNet/ResNeXt (BasicBlock, Bottleneck), EfficientNet v1/v2 (MBConv, FusedMBConv), ConvNeXt and
MobileNetV3; plus timm's spelling of ResNet, EfficientNet and ConvNeXt (`timm_*`, built with
timm). Run once with PyTorch, torchvision, safetensors and timm installed (all from PyPI):

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch torchvision safetensors timm
    /tmp/fx/bin/python scripts/make_zoo_fixtures.py                  # tiny models, committed
    /tmp/fx/bin/python scripts/make_zoo_fixtures.py --full --out DIR # full-size presets, not committed
    /tmp/fx/bin/python scripts/make_zoo_fixtures.py --param-counts   # torchvision's parameter counts

Everything is seeded (torch.manual_seed(0), a torch.Generator seeded 1234, both re-seeded per
model so `--models` gives the same files). Per model: `<name>.pth` (zip), `<name>.safetensors`
(for one tiny model per family and every full-size one),
`<name>_input.f32`, `<name>_features.f32` (the output of `features`, before the pool),
`<name>_logits.f32`; tensors are raw little-endian float32. `manifest.json` records every shape
and the versions used. `resnet_basic_legacy.pth` is the same state dict in the legacy (pre-1.6,
non-zip) pickle format.

Weights are randomised beyond torchvision's init so that a wrong key mapping cannot pass:
BatchNorm affine parameters and running statistics (the statistics calibrated on a separate
random batch, then perturbed, so the signal survives depth), LayerNorm affine parameters,
ConvNeXt's layer_scale (initialised to 1e-6, which would make every block an identity), every
Conv2d/Linear bias, and variance-preserving Linear (and ConvNeXt Conv2d) weights. Shuffling any
single float tensor of the state dict moves the features (or, for the classifier, the logits)
by more than 1e-3 of their largest magnitude.
"""
import argparse
import json
import os
import sys
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torchvision
from safetensors.torch import save_file
from torchvision.models.convnext import CNBlock, CNBlockConfig, ConvNeXt
from torchvision.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig
from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import randomise_batchnorm  # noqa: E402  (the same BatchNorm randomisation)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "zoo")


# ---------------------------------------------------------------------------------------------
# Randomisation


def randomise(model, gen):
    """BatchNorm as above; LayerNorm (incl. torchvision's LayerNorm2d, a subclass) weight
    U[0.5, 1.5], bias N(0, 0.2); ConvNeXt layer_scale U[0.5, 1.5]; Conv2d/Linear bias N(0, 0.05).

    Every Linear weight, and for ConvNeXt every Conv2d weight too, is re-drawn
    variance-preserving, N(0, 1/fan_in): ConvNeXt's own init (trunc_normal std 0.02) makes each
    block's residual branch ~1e-3 of its input even with layer_scale ~1, so a block's weights
    would barely move the output, and MobileNetV3's classifier init (std 0.01) squashes the
    logits to their biases."""
    randomise_batchnorm(model, gen)
    convnext = isinstance(model, ConvNeXt) or type(model).__name__ == "ConvNeXt"
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 1.0 + 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
            elif isinstance(m, CNBlock):
                m.layer_scale.copy_(torch.rand(m.layer_scale.shape, generator=gen) * 1.0 + 0.5)
            elif type(m).__name__ == "ConvNeXtBlock" and getattr(m, "gamma", None) is not None:
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=gen) * 1.0 + 0.5)  # timm
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                if isinstance(m, nn.Linear) or convnext:
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)


def calibrate_batchnorm(model, x, gen):
    """Running statistics near the data's, so that the signal survives depth.

    With arbitrary running statistics (randomise_batchnorm's N(0, 0.2) / U[0.5, 2.0]) the
    input-dependent part of the activations shrinks block after block in EfficientNet and
    MobileNetV3 (to ~1% of the features), and whole layers' weights then move the output by
    <1e-5 relative: a wrong mapping could pass. So, in one eval-mode pass over a calibration
    batch, each BatchNorm, just before it runs, takes its input's per-channel mean m and
    variance v and sets running_mean = m + N(0, 0.2) * sqrt(v), running_var = max(v, 1e-2) *
    U[0.5, 2.0] (the floor keeps dead channels from amplifying rounding noise)."""
    done = set()

    def hook(bn, args):
        if bn in done:
            return
        done.add(bn)
        h = args[0].detach()
        mean = h.mean(dim=(0, 2, 3))
        var = h.var(dim=(0, 2, 3), unbiased=False)
        n = bn.num_features
        bn.running_mean.copy_(mean + torch.randn(n, generator=gen) * 0.2 * var.sqrt())
        bn.running_var.copy_(var.clamp(min=1e-2) * (torch.rand(n, generator=gen) * 1.5 + 0.5))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()


# ---------------------------------------------------------------------------------------------
# Models


def resnet_features(m):
    """Everything before ResNet's avgpool (torchvision's ResNet has no `features`)."""
    return nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)


def features_of(model):
    if is_timm(model):
        return model.forward_features  # timm: everything before the pooling
    return resnet_features(model) if isinstance(model, ResNet) else model.features


def is_timm(model):
    return type(model).__module__.startswith("timm.")


def tiny_resnet(block, layers, stem, planes, groups=1, width_per_group=64, num_classes=10):
    """torchvision's ResNet machinery at small widths (ResNet.__init__ hard-codes 64..512)."""
    m = ResNet(block, [1, 1, 1, 1], num_classes=num_classes)
    m.groups = groups
    m.base_width = width_per_group
    m.inplanes = stem
    m.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
    m.bn1 = nn.BatchNorm2d(stem)
    m.layer1 = m._make_layer(block, planes[0], layers[0])
    m.layer2 = m._make_layer(block, planes[1], layers[1], stride=2)
    m.layer3 = m._make_layer(block, planes[2], layers[2], stride=2)
    m.layer4 = m._make_layer(block, planes[3], layers[3], stride=2)
    m.fc = nn.Linear(planes[3] * block.expansion, num_classes)
    for mod in m.modules():  # torchvision's init for the replaced modules
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
    return m


def resnet_basic():
    cfg = {"block": "BasicBlock", "layers": [1, 2, 1, 1], "stem": 8, "planes": [8, 16, 32, 64],
           "groups": 1, "width_per_group": 64, "bn_eps": 1e-5}
    return tiny_resnet(BasicBlock, cfg["layers"], cfg["stem"], cfg["planes"]), cfg


def resnext_bottleneck():
    cfg = {"block": "Bottleneck", "layers": [1, 1, 2, 1], "stem": 8, "planes": [8, 16, 32, 64],
           "groups": 2, "width_per_group": 8, "bn_eps": 1e-5}
    return tiny_resnet(Bottleneck, cfg["layers"], cfg["stem"], cfg["planes"], groups=2, width_per_group=8), cfg


def efficientnet_v1():
    # Stage strides follow torchvision's pattern by position (1, 2, 2, 2, 1, 2, 1): a state
    # dict holds no strides, so petal reads a non-preset EfficientNet with that pattern.
    bneck = partial(MBConvConfig, width_mult=0.25, depth_mult=1.0)
    setting = [bneck(1, 3, 1, 32, 16, 1), bneck(6, 3, 2, 16, 24, 2),
               bneck(6, 5, 2, 24, 40, 1), bneck(6, 3, 2, 40, 40, 2)]
    m = EfficientNet(inverted_residual_setting=setting, dropout=0.2, last_channel=None, num_classes=10)
    cfg = {"width_mult": 0.25, "depth_mult": 1.0, "last_channel": None, "bn_eps": 1e-5,
           "setting": [["MBConv", *t] for t in [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2),
                                                (6, 5, 2, 24, 40, 1), (6, 3, 2, 40, 40, 2)]]}
    return m, cfg


def efficientnet_v2():
    setting = [FusedMBConvConfig(1, 3, 1, 8, 8, 2), FusedMBConvConfig(4, 3, 2, 8, 16, 2),
               MBConvConfig(4, 3, 2, 16, 24, 2, width_mult=1.0, depth_mult=1.0)]
    m = EfficientNet(inverted_residual_setting=setting, dropout=0.2, last_channel=64, num_classes=10,
                     norm_layer=partial(nn.BatchNorm2d, eps=1e-3))
    cfg = {"last_channel": 64, "bn_eps": 1e-3,
           "setting": [["FusedMBConv", 1, 3, 1, 8, 8, 2], ["FusedMBConv", 4, 3, 2, 8, 16, 2],
                       ["MBConv", 4, 3, 2, 16, 24, 2]]}
    return m, cfg


def convnext():
    setting = [CNBlockConfig(8, 16, 1), CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 2),
               CNBlockConfig(64, None, 1)]
    m = ConvNeXt(block_setting=setting, stochastic_depth_prob=0.1, num_classes=10)
    cfg = {"setting": [[8, 16, 1], [16, 32, 1], [32, 64, 2], [64, None, 1]], "ln_eps": 1e-6}
    return m, cfg


def mobilenet_v3(arch, width_mult):
    def build():
        setting, last_channel = _mobilenet_v3_conf(arch, width_mult=width_mult)
        m = MobileNetV3(setting, last_channel, num_classes=10)
        return m, {"arch": arch, "width_mult": width_mult, "last_channel": last_channel, "bn_eps": 1e-3}
    return build


TINY = {
    "resnet_basic": ("resnet", resnet_basic),
    "resnext_bottleneck": ("resnet", resnext_bottleneck),
    "efficientnet_v1": ("efficientnet", efficientnet_v1),
    "efficientnet_v2": ("efficientnet", efficientnet_v2),
    "convnext": ("convnext", convnext),
    "mobilenet_v3_small": ("mobilenet_v3", mobilenet_v3("mobilenet_v3_small", 0.25)),
    # 0.125, not 0.25: at 0.25 the large variant has 299k parameters (a 1.3 MB .pth).
    # Below 0.25 _make_divisible's floor of 8 channels kicks in for the early stages.
    "mobilenet_v3_large": ("mobilenet_v3", mobilenet_v3("mobilenet_v3_large", 0.125)),
}


def preset(name):
    return lambda: (getattr(torchvision.models, name)(weights=None, num_classes=1000), {"preset": name})


FULL = {
    "resnet50": ("resnet", preset("resnet50")),
    "efficientnet_b0": ("efficientnet", preset("efficientnet_b0")),
    "convnext_tiny": ("convnext", preset("convnext_tiny")),
    "mobilenet_v3_large": ("mobilenet_v3", preset("mobilenet_v3_large")),
}

# timm's spelling of the same architectures (pip install timm): ResNet (its keys are
# torchvision's), EfficientNet (conv_stem / blocks.s.b.conv_dw / conv_head / classifier) and
# ConvNeXt (stem / stages.s.blocks.b / gamma of shape [C] / head.norm, head.fc).
def timm_resnet():
    from timm.models.resnet import BasicBlock as TimmBasic, ResNet as TimmResNet
    # (timm's plain stem is 64 channels whatever `stem_width` says: that is for deep stems.)
    m = TimmResNet(TimmBasic, [1, 1, 1, 1], num_classes=10, channels=(8, 16, 32, 64))
    return m, {"timm": "resnet", "layers": [1, 1, 1, 1], "stem_width": 64, "channels": [8, 16, 32, 64]}


def timm_efficientnet():
    from timm.models.efficientnet import _gen_efficientnet
    m = _gen_efficientnet("efficientnet_b0", channel_multiplier=0.1, depth_multiplier=0.5,
                          pretrained=False, num_classes=10)
    return m, {"timm": "efficientnet_b0", "channel_multiplier": 0.1, "depth_multiplier": 0.5}


def timm_convnext():
    import timm
    m = timm.create_model("convnext_tiny", pretrained=False, depths=(1, 1, 2, 1), dims=(8, 16, 32, 64),
                          num_classes=10)
    return m, {"timm": "convnext_tiny", "depths": [1, 1, 2, 1], "dims": [8, 16, 32, 64]}


TINY.update({
    "timm_resnet": ("resnet", timm_resnet),
    "timm_efficientnet": ("efficientnet", timm_efficientnet),
    "timm_convnext": ("convnext", timm_convnext),
})


def timm_preset(name):
    def build():
        import timm
        return timm.create_model(name, pretrained=False, num_classes=1000), {"timm": name}
    return build


FULL.update({
    "timm_resnet50": ("resnet", timm_preset("resnet50")),
    "timm_efficientnet_b0": ("efficientnet", timm_preset("efficientnet_b0")),
    "timm_convnext_tiny": ("convnext", timm_preset("convnext_tiny")),
})

LEGACY = {"resnet_basic"}
# Also written as <name>.safetensors: one tiny model per family (and one timm spelling) keeps
# the committed fixtures small; every full-size one.
SAFETENSORS = {"resnet_basic", "efficientnet_v1", "convnext", "mobilenet_v3_large", "timm_convnext"}  # also written as <name>_legacy.pth in the non-zip pickle format


# ---------------------------------------------------------------------------------------------
# Writing


def save_f32(out, fname, tensor):
    array = np.ascontiguousarray(tensor.detach().cpu().numpy()).astype("<f4")
    array.tofile(os.path.join(out, fname))
    return list(array.shape)


def prepare(build, input_shape):
    """The model, randomised and calibrated, in eval mode, and the fixture input."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    model, cfg = build()
    randomise(model, gen)
    calibrate_batchnorm(model, torch.randn(max(4, input_shape[0]), *input_shape[1:], generator=gen), gen)
    model.eval()
    x = torch.randn(*input_shape, generator=gen)
    return model, cfg, x


def make(out, name, family, build, input_shape):
    model, cfg, x = prepare(build, input_shape)
    with torch.no_grad():
        features = features_of(model)(x)
        logits = model(x)
    if not (torch.isfinite(features).all() and torch.isfinite(logits).all()):
        raise SystemExit(f"{name}: non-finite outputs")

    sd = model.state_dict()
    torch.save(sd, os.path.join(out, f"{name}.pth"))  # zip format
    if name in LEGACY:
        torch.save(sd, os.path.join(out, f"{name}_legacy.pth"), _use_new_zipfile_serialization=False)
    if name in SAFETENSORS or name in FULL:
        st = os.path.join(out, f"{name}.safetensors")
        save_file({k: v.contiguous() for k, v in sd.items()}, st)
        os.chmod(st, 0o644)  # safetensors creates it 0600
    entry = {
        "name": name,
        "family": family,
        "pth": f"{name}.pth",
        "input": f"{name}_input.f32",
        "input_shape": save_f32(out, f"{name}_input.f32", x),
        "features": f"{name}_features.f32",
        "features_shape": save_f32(out, f"{name}_features.f32", features),
        "logits": f"{name}_logits.f32",
        "logits_shape": save_f32(out, f"{name}_logits.f32", logits),
        "num_classes": int(logits.shape[1]),
        "num_params": sum(p.numel() for p in model.parameters()),
        "num_features": int(features.shape[1]),
        "config": cfg,
    }
    if name in LEGACY:
        entry["pth_legacy"] = f"{name}_legacy.pth"
    if name in SAFETENSORS or name in FULL:
        entry["safetensors"] = f"{name}.safetensors"
    return entry


def param_counts():
    """torchvision's parameter count (and `features` channel count) for every supported preset,
    built with weights=None on the meta device (no allocation, no download)."""
    names = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
             "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
             "wide_resnet50_2", "wide_resnet101_2",
             *[f"efficientnet_b{i}" for i in range(8)],
             "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
             "convnext_tiny", "convnext_small", "convnext_base", "convnext_large",
             "mobilenet_v3_large", "mobilenet_v3_small"]
    print(f"{'preset':<20} {'num_params':>12} {'features':>9} {'torchvision meta':>17}")
    for name in names:
        with torch.device("meta"):
            m = getattr(torchvision.models, name)(weights=None)
            n = sum(p.numel() for p in m.parameters())
            c = features_of(m)(torch.empty(1, 3, 224, 224)).shape[1]
        # The count torchvision records with its pretrained weights, as a cross-check.
        ref = torchvision.models.get_model_weights(name).DEFAULT.meta.get("num_params")
        flag = "" if ref == n else "  MISMATCH"
        print(f"{name:<20} {n:>12} {c:>9} {ref:>17}{flag}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help=f"output folder (default: {DEFAULT_OUT})")
    ap.add_argument("--full", action="store_true",
                    help="full-size presets (resnet50, efficientnet_b0, convnext_tiny, "
                         "mobilenet_v3_large), 1000 classes, input [1, 3, 224, 224]; needs --out")
    ap.add_argument("--models", default=None, help="comma-separated subset of the model names")
    ap.add_argument("--param-counts", action="store_true",
                    help="print torchvision's parameter count for every preset and exit")
    a = ap.parse_args()

    if a.param_counts:
        param_counts()
        return
    if a.full and a.out is None:
        raise SystemExit("--full needs --out DIR (full-size fixtures are not committed)")
    out = a.out or DEFAULT_OUT
    table, input_shape = (FULL, (1, 3, 224, 224)) if a.full else (TINY, (2, 3, 64, 64))
    names = list(table) if a.models is None else [n.strip() for n in a.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {', '.join(table)}")

    os.makedirs(out, exist_ok=True)
    manifest = {"generator": "scripts/make_zoo_fixtures.py", "torch": torch.__version__,
                "torchvision": torchvision.__version__, "models": []}
    for name in names:
        family, build = table[name]
        manifest["models"].append(make(out, name, family, build, input_shape))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")

    files = sorted(os.listdir(out))
    total = sum(os.path.getsize(os.path.join(out, f)) for f in files)
    biggest = max(files, key=lambda f: os.path.getsize(os.path.join(out, f)))
    print(f"wrote {len(names)} models, {len(files)} files, {total / 1024:.1f} KiB to {out} "
          f"(largest {biggest}: {os.path.getsize(os.path.join(out, biggest)) / 1024:.1f} KiB)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
