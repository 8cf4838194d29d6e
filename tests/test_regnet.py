"""RegNet: the width generator against timm's and torchvision's own (float32, as torch computes
it) and pycls's (float64), the `regnet:` section, and timm's RegNets by name."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import timm
import timm.models.regnet as timm_regnet
import torch
import yaml
from support import (
    ROOT,
    assert_computes_like,
    assert_timm_structure,
    realistic_bn,
    run_cli,
)

import resnet_compiler as rc
from resnet_compiler.language.regnet import generate

PINNED = dict(depth=15, w0=120, wa=100.1, wm=2.1, group_width=8)


def _timm_stages(depth, w0, wa, wm, group_width, bottle_ratio=1.0, min_ratio=0.0):
    widths, n, groups = timm_regnet.generate_regnet(wa, w0, wm, depth, group_width)
    stage_widths, depths = torch.unique(torch.tensor(widths), return_counts=True)
    ws, gs = timm_regnet.adjust_widths_groups_comp(stage_widths.tolist(), [bottle_ratio] * n,
                                                   groups, min_ratio)
    return list(zip(ws, depths.tolist(), gs, strict=True))


def _pycls_widths(depth, w0, wa, wm):
    """pycls's generate_regnet, in numpy float64."""
    ws_cont = np.arange(depth) * wa + w0
    ks = np.round(np.log(ws_cont / w0) / np.log(wm))
    ws = np.round(np.divide(w0 * np.power(wm, ks), 8)).astype(int) * 8
    widths, counts = np.unique(ws, return_counts=True)
    return list(zip(widths.tolist(), counts.tolist(), strict=True))


@pytest.mark.parametrize(("rounding", "widths"), [("pycls", [120, 256, 528, 1112]),
                                                  ("timm", [120, 248, 528, 1112]),
                                                  ("torchvision", [120, 248, 528, 1112])])
def test_the_pinned_case_where_float32_and_float64_disagree(rounding, widths) -> None:
    """120 x 2.1 / 8 is exactly 31.5 in float64 (rounds to 32) and 31.499998 in float32 (31)."""
    stages = generate(**PINNED, rounding=rounding)
    assert [s.width for s in stages] == widths and [s.depth for s in stages] == [1, 2, 4, 8]
    assert math.isclose(120 * 2.1 / 8, 31.5)


def test_float32_widths_equal_torchs_on_random_configs() -> None:
    """pycls's sampling ranges; timm's quantize_float and torchvision's make_divisible groups."""
    rng = random.Random(0)
    for _ in range(1500):
        cfg = dict(depth=rng.randint(12, 28), w0=rng.randrange(8, 257, 8),
                   wa=round(rng.uniform(8, 256), 1), wm=round(rng.uniform(2, 3), 3),
                   group_width=rng.choice([8, 16, 24, 32, 48, 64]))
        for rounding, min_ratio in (("timm", 0.0), ("torchvision", 0.9)):
            mine = [(s.width, s.depth, s.group_width) for s in generate(**cfg, rounding=rounding)]
            assert mine == _timm_stages(**cfg, min_ratio=min_ratio), (cfg, rounding)
        assert [(s.width, s.depth) for s in generate(**cfg, bottle_ratio=1.0, rounding="pycls")
                ] == [(max(cfg["group_width"] if w >= cfg["group_width"] else w,
                           round(w / min(cfg["group_width"], w)) * min(cfg["group_width"], w)), d)
                      for w, d in _pycls_widths(cfg["depth"], cfg["w0"], cfg["wa"], cfg["wm"])]


def test_bottleneck_ratios_follow_timm() -> None:
    cfg = dict(depth=21, w0=16, wa=10.7, wm=2.51, group_width=4)  # regnetz_005
    mine = [(s.width, s.depth, s.group_width) for s in generate(**cfg, bottle_ratio=4.0,
                                                                rounding="timm")]
    assert mine == _timm_stages(**cfg, bottle_ratio=4.0)


NUMERIC = ["regnetx_002", "regnety_004", "regnetx_004_tv", "regnety_040_sgn", "regnetz_005",
           "regnetv_040", "regnetv_064"]


@pytest.mark.parametrize("name", NUMERIC)
def test_timm_regnets_by_name_compute_what_timm_computes(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    peer = realistic_bn(timm.create_model(name)).eval()
    with torch.no_grad():  # GroupNorm affines too, so a misplaced one shows
        for m in peer.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    net = rc.compile(name)
    assert_computes_like(net, peer, tmp_path)


def test_every_timm_regnet_preset_has_timms_structure() -> None:
    names = rc.list_models("regnet*")
    assert len(names) == 36 and "regnetv_064" in names
    for name in names:
        assert_timm_structure(name)


def _section_spec(tmp_path: Path, **regnet) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "input": {"channels": 3, "height": 64, "width": 64},
                                    "num_classes": 10, "regnet": regnet}, sort_keys=False))
    return path


def test_a_regnet_section_alone_is_a_network_and_can_be_patched(tmp_path: Path) -> None:
    spec = _section_spec(tmp_path, depth=14, w0=56, wa=38.84, wm=2.4, group_width=16,
                         se_ratio=0.25, rounding="timm")
    net = rc.compile(spec)
    peer = timm_regnet.RegNet(timm_regnet.RegNetCfg(depth=14, w0=56, wa=38.84, wm=2.4,
                                                    group_size=16, se_ratio=0.25), num_classes=10)
    assert net.total_params == sum(p.numel() for p in peer.parameters())
    deeper = rc.compile(spec, overrides={"regnet.depth": 16})  # the generator runs again
    assert [len(s.blocks) for s in deeper.layout.stages] != [len(s.blocks) for s in net.layout.stages]
    child = tmp_path / "child.yaml"
    child.write_text("extends: r.yaml\nstages: {s2: {depth: 5}}\n")
    assert [len(s.blocks) for s in rc.compile(child).layout.stages][1] == 5
    assert [st.name for st in net.layout.stages] == ["s1", "s2", "s3", "s4"]
    assert "s1.b1.conv1.conv.weight" in net.build_torch().state_dict()


@pytest.mark.parametrize(("change", "message"), [
    ({"w0": 20}, r"regnet\.w0: must be a positive multiple of 8 \(got 20\)"),
    ({"wm": 1.0}, r"regnet\.wm: must be a number above 1"),
    ({"rounding": "numpy"}, r"regnet\.rounding: must be one of pycls, timm, torchvision"),
    ({"group_widht": 8}, r"regnet\.group_widht: unknown key 'group_widht'; did you mean 'group_width'"),
])
def test_bad_regnet_sections_are_one_line_errors(tmp_path: Path, change, message) -> None:
    import re
    regnet = {"depth": 14, "w0": 56, "wa": 38.84, "wm": 2.4, "group_width": 16, **change}
    if "group_widht" in change:
        regnet.pop("group_width")
    r = run_cli(_section_spec(tmp_path, **regnet), "--check")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and re.search(message, lines[0]), r.stderr


# pycls's own figures (dev/model_complexity.json): R-50-1x64d, RegNetX-400MF, RegNetY-400MF,
# RegNetY-800MF; and RegNetY-400MF at 200x200 by pycls's formulas
PYCLS = [
    (str(ROOT / "spec" / "resnet50.yaml"), None, (4_089_185_256, 25_557_032, 11_315_688)),
    ("regnetx_004", None, (397_678_568, 5_157_512, 3_143_272)),
    ("regnety_004", None, (401_849_056, 4_344_144, 3_892_496)),
    (dict(depth=14, w0=56, wa=38.84, wm=2.4, group_width=16, se_ratio=0.25), 224,
     (797_183_328, 6_263_168, 5_249_888)),
    (dict(depth=16, w0=48, wa=27.89, wm=2.09, group_width=8, se_ratio=0.25), 200,
     (353_193_952, 4_344_144, 3_236_384)),
]


@pytest.mark.parametrize(("spec", "size", "want"), PYCLS, ids=["r50", "x400", "y400", "y800", "y400@200"])
def test_counts_as_pycls_counts_them(tmp_path: Path, spec, size, want) -> None:
    if isinstance(spec, dict):
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump({"name": "r", "input": {"channels": 3, "height": size,
                                                                 "width": size},
                                        "num_classes": 1000, "regnet": spec}))
        spec = path
    net = rc.compile(spec)
    c = net.count("pycls")
    assert (c["flops"], c["params"], c["acts"]) == want
    r = run_cli(spec, "--check", "--count", "pycls")
    assert r.returncode == 0 and f"flops {want[0]:,}, params {want[1]:,}, acts {want[2]:,}" in r.stdout


def _pycls_regnet(**regnet) -> torch.nn.Module:
    """pycls's own RegNet (pycls 0.1.1, the RegNet papers' code) for these REGNET settings; its
    config is a global, restored afterwards."""
    from pycls.core.config import cfg
    from pycls.models.regnet import RegNet
    saved = {k: cfg.REGNET[k] for k in regnet}, cfg.MODEL.NUM_CLASSES
    try:
        cfg.MODEL.NUM_CLASSES = 1000
        for k, v in regnet.items():
            cfg.REGNET[k] = v
        return RegNet()
    finally:
        for k, v in saved[0].items():
            cfg.REGNET[k] = v
        cfg.MODEL.NUM_CLASSES = saved[1]


@pytest.mark.parametrize(("section", "pycls_cfg"), [
    ("{depth: 22, w0: 24, wa: 24.48, wm: 2.54, group_width: 16}",
     dict(DEPTH=22, W0=24, WA=24.48, WM=2.54, GROUP_W=16, SE_ON=False)),
    ("{depth: 16, w0: 48, wa: 27.89, wm: 2.09, group_width: 8, se_ratio: 0.25}",
     dict(DEPTH=16, W0=48, WA=27.89, WM=2.09, GROUP_W=8, SE_ON=True, SE_R=0.25)),
], ids=["RegNetX-400MF", "RegNetY-400MF"])
def test_names_pycls_loads_pycls_own_regnets(tmp_path: Path, section: str, pycls_cfg) -> None:
    """`regnet: {names: pycls}` names the modules as pycls's anynet.py does (stem.conv,
    s1.b1.f.a, f.a_bn, f.se.f_ex.0, proj, bn, head.fc): pycls's state_dict loads strict and the
    outputs agree, in torch and onnxruntime."""
    spec = tmp_path / "pycls.yaml"
    spec.write_text("name: pycls_regnet\ninput: {channels: 3, height: 224, width: 224}\n"
                    f"num_classes: 1000\nregnet: {section[:-1]}, names: pycls}}\n")
    torch.manual_seed(0)
    peer = realistic_bn(_pycls_regnet(**pycls_cfg)).eval()
    net = rc.compile(spec)
    assert net.total_params == sum(p.numel() for p in peer.parameters())
    assert_computes_like(net, peer, tmp_path)
