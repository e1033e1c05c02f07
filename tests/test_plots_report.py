"""`distill plot` and `distill report` on a real (shortened) quickstart run: the PNGs exist and
are PNGs, the HTML page is self-contained and holds the table's numbers; continual and retrieval
figures from the files such runs write; and the refusals."""
from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from distill.cli import main
from distill.results import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("plots") / "runs"
    assert main(["run", str(ROOT / "experiments" / "quickstart.yaml"), "--out", str(out),
                 "--seeds", "0,1", "--set", "train.epochs=3",
                 "--set", "teacher.train.epochs=2"]) == 0
    return out / "quickstart"


def test_plot_draws_the_curves_of_every_variant(quickstart, capsys):
    assert main(["plot", str(quickstart)]) == 0
    written = [Path(line) for line in capsys.readouterr().out.split()]
    names = sorted(p.name for p in written)
    assert names == ["terms-ce-only.png", "terms-kd.png", "validation.png"]
    for path in written:
        assert path.parent == quickstart / "plots" and path.read_bytes()[:8] == PNG
        assert path.stat().st_size > 5000  # drawn, not an empty canvas


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("href", "src"):
            if attrs.get(key, "").startswith(("http:", "https:", "//")):
                self.links.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


def test_the_report_is_one_offline_page_with_the_tables_numbers(quickstart, capsys, tmp_path):
    out = tmp_path / "page.html"
    assert main(["report", str(quickstart), "--out", str(out)]) == 0
    page = Page()
    page.feed(out.read_text(encoding="utf-8"))
    assert not page.links  # nothing fetched from elsewhere
    assert len(page.images) == 3 and all(src.startswith("data:image/png;base64,")
                                         for src in page.images)
    text = " ".join(page.text)
    capsys.readouterr()
    assert main(["compare", str(quickstart), "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    for row in table["rows"]:
        assert row["variant"] in text
        assert f"{row['top1']['mean']:.2f}" in text
    assert "confidence interval" in text and "paired t-test" in text
    for run in ("ce-only/seed0", "kd/seed1", "teacher"):
        assert run in text  # each run's section
    assert "objectives" in text  # its configuration


def test_continual_and_retrieval_runs_get_their_figures(tmp_path, capsys):
    store = ResultsStore(tmp_path / "results.sqlite")
    exp = tmp_path / "split"
    for seed, shift in ((0, 0.0), (1, 2.0)):
        run = exp / "prd" / f"seed{seed}"
        run.mkdir(parents=True)
        R = [[90.0 + shift], [70.0 + shift, 85.0], [60.0, 65.0 + shift, 80.0]]
        (run / "metrics.json").write_text(json.dumps({
            "cil_avg_acc": 68.0, "R": {"til": R, "cil": R}, "rsum": 300.0 + seed,
            "latency_i2t_us": 120.0 + seed}))
        store.record("split", "prd", seed, {"cil_avg_acc": 68.0})
    assert main(["plot", str(exp)]) == 0
    names = sorted(Path(p).name for p in capsys.readouterr().out.split())
    assert names == ["accuracy-matrix-prd.png", "retrieval.png"]
    assert (exp / "plots" / "accuracy-matrix-prd.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("command", ["plot", "report"])
def test_what_plot_and_report_refuse_is_one_line(tmp_path, capsys, command):
    assert main([command, str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "lonely").mkdir()
    assert main([command, str(tmp_path / "lonely")]) == 2
    assert "results.sqlite" in capsys.readouterr().err
    ResultsStore(tmp_path / "results.sqlite").record("lonely", "ce", 0, {"top1": 1.0})
    assert main([command, str(tmp_path / "lonely")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no finished runs" in err


def test_without_matplotlib_plot_says_which_extra(tmp_path, capsys, monkeypatch):
    ResultsStore(tmp_path / "results.sqlite").record("x", "ce", 0, {"top1": 1.0})
    (tmp_path / "x" / "ce" / "seed0").mkdir(parents=True)
    (tmp_path / "x" / "ce" / "seed0" / "metrics.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", str(tmp_path / "x")]) == 2
    assert "plots extra" in capsys.readouterr().err


@pytest.mark.parametrize("damage,words", [
    (lambda run: (run / "logs" / "metrics.csv").write_bytes(b"epoch,val/acc\n0,\xff\n"),
     ["metrics.csv", "damaged"]),
    (lambda run: (run / "metrics.json").write_text("{not json"), ["metrics.json", "damaged"]),
    (lambda run: (run / "metrics.json").write_text("[1, 2]"), ["metrics.json", "not a JSON object"]),
])
def test_a_damaged_run_file_is_one_line(tmp_path, capsys, damage, words):
    ResultsStore(tmp_path / "results.sqlite").record("x", "ce", 0, {"top1": 1.0})
    run = tmp_path / "x" / "ce" / "seed0"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "metrics.csv").write_text("epoch,step,val/acc\n0,1,50.0\n1,2,60.0,extra\n")
    (run / "metrics.json").write_text("{}")
    assert main(["plot", str(tmp_path / "x")]) == 0  # a row longer than the header is skipped
    damage(run)
    assert main(["plot", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
