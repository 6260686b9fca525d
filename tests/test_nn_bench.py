"""benchmarks/bench_nn.py times the library's own training step (sdlib.nn.fitting.train_step and
StackedFits.step, not a copy), and its JSON file holds every finished measurement while it runs;
benchmarks/gpu_session.sh stays within 8 minutes and two folders under its output."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_nn", ROOT / "benchmarks" / "bench_nn.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["bench_nn"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_bench_times_the_library_training_step(bench, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sdlib.nn import fitting as T

    calls = {"step": 0, "stack": 0}
    real_step, real_stack = T.train_step, T.StackedFits.step

    def counted_step(*a, **k):  # type: ignore[no-untyped-def]
        calls["step"] += 1
        return real_step(*a, **k)

    def counted_stack(self, *a, **k):  # type: ignore[no-untyped-def]
        calls["stack"] += 1
        return real_stack(self, *a, **k)

    monkeypatch.setattr(bench, "train_step", counted_step)       # the name bench_nn imported from sdlib
    monkeypatch.setattr(T.StackedFits, "step", counted_stack)
    assert bench.train_step is counted_step and real_step is T.train_step
    data = bench._synthetic(64)
    dev = torch.device("cpu")
    assert bench.bench_ours("small_cnn", data, dev, 16, 3, 1) > 0
    assert calls["step"] == 4
    assert bench.bench_together("small_cnn", data, dev, 3, 2, 1) > 0
    assert calls["stack"] == 3


def test_every_measurement_is_written_at_once(bench, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "nn_cpu.json"
    seen: list[dict] = []
    real = bench.bench_ours

    def ours_then_stop(*a, **k):  # type: ignore[no-untyped-def]
        if a[3] == 64:                                    # the second batch size: a timeout strikes here
            seen.append(json.loads(out.read_text()))
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(bench, "bench_ours", ours_then_stop)
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--archs", "small_cnn", "--iters", "2", "--warmup", "0", "--batch-sizes", "16", "64",
                    "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["complete"] is False and doc == seen[0]
    got = [(r["impl"], r["batch_size"]) for r in doc["results"]["rates"]]
    assert got == [("baseline", 16), ("ours", 16)] and "small_cnn/ours/b16" in doc["results"]["ratios_vs_baseline"]
    assert doc["provenance"]["packages"]["torch"]


def test_gpu_session_fits_in_eight_minutes_and_two_folders() -> None:
    text = (ROOT / "benchmarks" / "gpu_session.sh").read_text()
    total = int(re.search(r"^TOTAL=(\d+)", text, re.M).group(1))   # type: ignore[union-attr]
    caps = [int(c) for c in re.findall(r'timeout "\$\(left (\d+)\)"', text)]
    assert total <= 480 and len(caps) == 3 and sum(caps) <= 480
    outputs = re.findall(r'"\$RES/([^"]+)"', text)
    assert outputs and all(o.count("/") <= 1 for o in outputs), outputs
