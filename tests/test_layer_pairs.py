"""Layers tapped by name and the objectives over layer pairs (at, fitnet): the losses against
their authors' formulas written out here, the regressors' shapes, and the file's checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill.cli import main
from distill.config.load import load_experiment
from distill.objectives.at import at_loss
from distill.objectives.fitnet import regressor
from distill.objectives.layer_pairs import pooled_to
from experiment_text import build_variant


def reference_at(fs: torch.Tensor, ft: torch.Tensor, p: float) -> float:
    """Attention transfer as the authors' code computes it, in numpy."""
    def q(f):
        a = (np.abs(f.numpy().astype(np.float64)) ** p).mean(axis=1).reshape(len(f), -1)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    return float(((q(fs) - q(ft)) ** 2).mean())


@pytest.mark.parametrize("shape_s,shape_t,p", [((4, 3, 5, 5), (4, 7, 5, 5), 2.0),
                                               ((1, 2, 3, 3), (1, 2, 3, 3), 2.0),
                                               ((3, 4, 6), (3, 8, 6), 4.0),
                                               ((2, 3, 4, 4), (2, 3, 4, 4), 3.0)])
def test_at_loss_is_the_authors_formula(shape_s, shape_t, p):
    g = torch.Generator().manual_seed(len(shape_s) + shape_s[0])
    fs, ft = torch.randn(shape_s, generator=g), torch.randn(shape_t, generator=g)  # signed maps
    assert at_loss(fs, ft, p).item() == pytest.approx(reference_at(fs, ft, p), rel=1e-5)
    assert at_loss(fs, fs.clone(), p).item() == pytest.approx(0.0, abs=1e-7)


def test_the_larger_map_is_pooled_to_the_smaller_ones_size():
    big, small = torch.rand(2, 3, 8, 8), torch.rand(2, 5, 4, 4)
    a, b = pooled_to(big, small)
    assert a.shape == (2, 3, 4, 4) and b is small
    torch.testing.assert_close(a, F.avg_pool2d(big, 2))
    b2, a2 = pooled_to(small, big)
    assert b2 is small and a2.shape == (2, 3, 4, 4)
    one_d = pooled_to(torch.rand(2, 3, 12), torch.rand(2, 3, 4))[0]
    assert one_d.shape == (2, 3, 4)


@pytest.mark.parametrize("s,t,kind", [((2, 8, 6, 6), (2, 16, 6, 6), "1x1"),
                                      ((2, 8, 8, 8), (2, 16, 4, 4), "stride2"),
                                      ((2, 8, 4, 4), (2, 16, 8, 8), "transposed"),
                                      ((2, 8, 7, 7), (2, 16, 5, 5), "kernel3"),
                                      ((2, 8, 10), (2, 4, 5), "stride2")])
def test_the_regressor_maps_the_students_map_to_the_teachers_shape(s, t, kind):
    r = regressor(s, t)
    assert r(torch.randn(s)).shape == t
    layer = r[0]
    expected = {"1x1": 1, "stride2": 3, "transposed": 4, "kernel3": 3}[kind]
    assert layer.kernel_size[0] == expected
    assert isinstance(r[-1], torch.nn.ReLU) and not isinstance(regressor(s, t, relu=False)[-1],
                                                                 torch.nn.ReLU)


def test_a_student_map_smaller_than_the_teachers_but_not_half_is_refused():
    with pytest.raises(ValueError, match="smaller than the teacher's"):
        regressor((2, 8, 3, 3), (2, 8, 5, 5))


PAIRS = """\
name: pairs
seeds: [0]
data: {{name: digits, batch_size: 64}}
teacher:
  role: frozen
  net: {{name: resnet8x4, taps: {{t1: layer1, t2: layer2, t3: layer3}}}}
  train: {{epochs: 1}}
student:
  net: {{name: resnet20, taps: {{s1: layer1, s2: layer2, s3: layer3}}}}
train: {{epochs: 1}}
objectives:
  - {{name: ce}}
  - {objective}
"""


def write(tmp_path, objective: str, **replace) -> str:
    text = PAIRS.format(objective=objective)
    for old, new in replace.items():
        text = text.replace(old, new)
    f = tmp_path / "pairs.yaml"
    f.write_text(text)
    return str(f)


def test_three_pairs_of_different_sizes_validate_and_train(tmp_path, capsys):
    f = write(tmp_path, "{name: at, pairs: [[s1, t1], [s2, t3], [s3, t1]]}")
    assert main(["validate", f]) == 0
    module, data = build_variant(load_experiment(f), "default")
    term = module.terms[1]
    assert term.weight == 1000.0  # mdistiller's
    x, y, index = next(iter(data.train_dataloader()))
    step = module.kind.step(module, (x, y, index))
    s, t = step.student.layers, step.teacher.layers
    assert s["s1"].shape[2:] == (8, 8) and t["t3"].shape[2:] == (2, 2)
    expected = (reference_at(s["s1"].detach(), t["t1"], 2.0)
                + reference_at(F.adaptive_avg_pool2d(s["s2"].detach(), 2), t["t3"], 2.0)
                + reference_at(s["s3"].detach(), F.adaptive_avg_pool2d(t["t1"], 2), 2.0))
    assert term.objective(step).item() == pytest.approx(expected, rel=1e-5)


def test_fitnet_regresses_each_pair_and_its_weight_is_mdistillers(tmp_path):
    f = write(tmp_path, "{name: fitnet, pairs: [[s2, t2], [s1, t2]], weight: 7.0}")
    module, data = build_variant(load_experiment(f), "default")
    term = module.terms[1]
    assert term.weight == 7.0 and len(term.objective.regressors) == 2
    assert term.objective.regressors[1][0].stride == (2, 2)  # 8x8 -> 4x4
    step = module.kind.step(module, next(iter(data.train_dataloader())))
    s, t = step.student.layers, step.teacher.layers
    r = term.objective.regressors
    expected = F.mse_loss(r[0](s["s2"]), t["t2"]) + F.mse_loss(r[1](s["s1"]), t["t2"])
    assert term.objective(step).item() == pytest.approx(expected.item(), rel=1e-5)
    plain = build_variant(load_experiment(write(tmp_path, "{name: fitnet, pairs: [[s2, t2]]}")),
                          "default")[0]
    assert plain.terms[1].weight == 100.0
    # the regressors train with the student
    optimizer = plain.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) in trained for p in plain.terms[1].objective.regressors.parameters())


@pytest.mark.parametrize("objective,replace,key,words", [
    ("{name: at, pairs: [[s2, t9]]}", {}, "objectives.1.pairs.0", ["teacher has no layer 't9'",
                                                                   "t1, t2, t3"]),
    ("{name: at, pairs: [[s2, t2]]}", {"s2: layer2": "s2: layer_2"}, "student.net",
     ["no module 'layer_2'", "did you mean 'layer2'"]),
    ("{name: fitnet, pairs: [[s3, t1]]}", {}, "objectives.1.pairs.0", ["smaller than the "
                                                                       "teacher's"]),
    ("{name: at, pairs: [[s2, t2]]}", {"s1: layer1": "s1: fc"}, None, None),
    ("{name: at, pairs: [[s1, t2]]}", {"s1: layer1": "s1: fc"}, "objectives.1.pairs.0",
     ["feature maps", "student's 's1' is 2 x 10"]),
    ("{name: at, pairs: []}", {}, "objectives.1.pairs", ["at least 1"]),
    ("{name: at, pairs: [[s1, t1]]}", {"s1: layer1": "logits: layer1"}, "student.net",
     ["tap name 'logits'"]),
    ("{name: at, pairs: [[features, t1]]}", {"s1: layer1": "features: layer1"},
     "objectives.1.pairs.0", ["names an output field"]),
    ("{name: fitnet, pairs: [[s2, t2]]}", {"s2: layer2": "s2: layer2.1"}, None, None),
    ("{name: fitnet, pairs: [[s1, t2]]}", {"s1: layer1": "s1: 'layer1:input'"}, None, None),
])
def test_a_bad_pair_or_tap_is_one_line_naming_the_key(tmp_path, capsys, objective, replace, key,
                                                     words):
    f = write(tmp_path, objective, **replace)
    code = main(["validate", f])
    err = capsys.readouterr().err.strip()
    if key is None:
        assert code == 0, err
        return
    assert code == 2 and len(err.splitlines()) == 1, err
    assert key in err and all(w in err for w in words), err


def test_list_modules_prints_each_module_path_with_its_output_shape(capsys):
    assert main(["list", "--modules", "resnet20", "--input", "1x8x8", "--classes", "4"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip()
            for line in out.splitlines() if line.count("│") == 4}
    assert rows["layer1"] == "B x 16 x 8 x 8" and rows["layer3"] == "B x 64 x 2 x 2"
    assert rows["fc"] == "B x 4"


@pytest.mark.parametrize("args,words", [(["--modules", "resnt20"], ["--modules", "resnet20"]),
                                        (["--modules", "resnet20", "--input", "3xx"], ["--input"]),
                                        (["--modules", "resnet20", "--classes", "0"],
                                         ["--classes"])])
def test_list_modules_refuses_what_it_cannot_build_in_one_line(capsys, args, words):
    assert main(["list", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_the_files_p_and_relu_reach_the_objectives(tmp_path):
    module, data = build_variant(load_experiment(write(tmp_path, "{name: at, pairs: [[s2, t2]], "
                                                                 "p: 4.0}")), "default")
    step = module.kind.step(module, next(iter(data.train_dataloader())))
    s, t = step.student.layers["s2"].detach(), step.teacher.layers["t2"]
    assert module.terms[1].objective(step).item() == pytest.approx(reference_at(s, t, 4.0),
                                                                   rel=1e-5)
    plain = build_variant(load_experiment(write(tmp_path, "{name: fitnet, pairs: [[s2, t2]], "
                                                          "relu: false}")), "default")[0]
    assert not any(isinstance(m, torch.nn.ReLU) for m in plain.terms[1].objective.regressors[0])


def test_list_modules_takes_network_parameters_and_refuses_stray_options(capsys):
    assert main(["list", "--modules", "small_cnn", "--param", "width=4", "--input", "1x8x8"]) == 0
    assert "B x 8 x 4 x 4" in capsys.readouterr().out  # the stage of width 2 x 4
    for args, words in ((["list", "--input", "1x8x8"], ["give --modules"]),
                        (["list", "--modules", "seq2seq"], ["text network"]),
                        (["list", "--modules", "mlp", "--param", "hidden"], ["key=value"]),
                        (["list", "--modules", "resnet20", "--input", "5"], ["--input"])):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_list_shows_descriptions_as_written(capsys):
    """Square brackets in a description are text, not rich's markup (at's ``pairs: [[s1, t1],
    ...]`` was printed as ``pairs: [, , ]``); double backticks show as one."""
    import re

    assert main(["list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"\[\[s1, ?t1\]", out), out[:2000]
    assert "``" not in out
