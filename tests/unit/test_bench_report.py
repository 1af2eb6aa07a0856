"""bench/run's report on canned figures: sections, baselines beside values, and the plots."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _bench_run() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("bench_run", str(ROOT / "bench" / "run"))
    spec = importlib.util.spec_from_loader("bench_run", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _figure(benchmark: str, figure: str, value: float, unit: str, baseline: float,
            **extra: Any) -> dict[str, Any]:
    return {"benchmark": benchmark, "figure": figure, "value": value, "unit": unit,
            "baseline": baseline, "ratio": round(value / baseline, 3) if baseline else None,
            **extra}


CANNED = {
    "generated": "2026-11-23T12:00:00+00:00",
    "host": {"cpus": 2, "python": "3.11.7", "platform": "Linux"},
    "git": {"commit": "0123456789abcdef", "dirty": False},
    "runs": [{"name": "customers", "returncode": 0}, {"name": "voice_accuracy", "returncode": 3}],
    "figures": [
        _figure("customers", "ResolveCustomer: throughput", 2400.0, "requests/s", 6100.0),
        _figure("oidc", "token grants", 310.0, "per_second", 900.0),
        _figure("customers", "ResolveCustomer: p50 latency", 3.1, "ms", 0.9),
        _figure("customers", "ResolveCustomer: p99 latency", 11.4, "ms", 2.2),
        _figure("voice_accuracy", "VoxForge 16 kHz: EER", 5.03, "%", 2.0, meets_target=False,
                target="<= 2%"),
        _figure("voice_accuracy", "VoxForge 16 kHz: DET curve (EER)", 5.03, "%", 2.0,
                det_far=[0.5, 0.1, 0.05, 0.01, 0.001], det_frr=[0.001, 0.02, 0.05, 0.1, 0.3]),
        _figure("matching_quality", "generated: pairwise_f1", 0.97, "ratio", 0.81),
        _figure("matching_speed", "peak memory", 512.0, "MiB", 0.0),
    ],
}


def test_the_report_puts_each_figure_beside_its_baseline_with_a_plot_per_kind(
        tmp_path: Path) -> None:
    written = _bench_run().load_report_writer()(tmp_path, CANNED)

    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    titles = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert titles == ["## Voice accuracy and DET curves", "## Throughput", "## Latency percentiles",
                      "## Match quality", "## Other figures"]
    for stem in ("det", "throughput", "latency", "match_quality"):
        assert f"({stem}.png)" in markdown
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == PNG
    assert {p.name for p in written} == {"report.md", "det.png", "throughput.png",
                                         "latency.png", "match_quality.png"}
    assert "| customers | ResolveCustomer: p99 latency | 11.40 | ms | 2.20 | 5.18 |" in markdown
    assert "| oidc | token grants | 310 | per_second | 900 | 0.34 |" in markdown
    latency = markdown.split("## Latency percentiles")[1].split("## ")[0]
    assert "throughput" not in latency  # each figure in one section only
    voice = markdown.split("## Voice accuracy and DET curves")[1].split("## ")[0]
    assert "| voice_accuracy | VoxForge 16 kHz: EER | 5.03 | % | 2.00 | 2.52 | <= 2% | **no** |" \
        in voice
    assert "Failed: voice_accuracy (exit 3)" in markdown
