"""bench/run's report: one Markdown file and a PNG per kind of figure, each beside its baseline.

Figures are sorted into sections by what they measure: voice accuracy with
its DET curves (figures that carry ``det_far``/``det_frr``), throughput (a unit
per second), latency percentiles (ms, p50/p99), match quality (the
matching_quality benchmark), and everything else. Each section has a table
(value, same-run baseline, ratio, target) and, where a picture helps, a plot next to it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

Figure = dict[str, Any]
SUBJECT, BASELINE = "#3b6ea8", "#bbbbbb"
DET_TICKS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]


def is_det(fig: Figure) -> bool:
    return "det_far" in fig and "det_frr" in fig


def is_voice_accuracy(fig: Figure) -> bool:
    return is_det(fig) or str(fig["benchmark"]) == "voice_accuracy"


def is_throughput(fig: Figure) -> bool:
    return str(fig["unit"]).endswith("/s") or str(fig["unit"]) == "per_second"


def is_latency(fig: Figure) -> bool:
    name = str(fig["figure"]).lower()
    return str(fig["unit"]) == "ms" and any(p in name for p in ("p50", "p90", "p99", "latency"))


def is_match_quality(fig: Figure) -> bool:
    return str(fig["benchmark"]) == "matching_quality"


# (title, file stem, which figures, plot); the first section that takes a figure keeps it.
SECTIONS: list[tuple[str, str, Callable[[Figure], bool]]] = [
    ("Voice accuracy and DET curves", "det", is_voice_accuracy),
    ("Throughput", "throughput", is_throughput),
    ("Latency percentiles", "latency", is_latency),
    ("Match quality", "match_quality", is_match_quality),
    ("Other figures", "", lambda _: True),
]


def number(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def sections(figures: list[Figure]) -> list[tuple[str, str, list[Figure]]]:
    left = list(figures)
    result = []
    for title, stem, takes in SECTIONS:
        taken = [fig for fig in left if takes(fig)]
        left = [fig for fig in left if not takes(fig)]
        if taken:
            result.append((title, stem, taken))
    return result


def write_report(directory: Path, report: dict[str, Any]) -> list[Path]:
    """report.md and its plots in ``directory``; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    host, git = report["host"], report["git"]
    lines = [
        "# Benchmark report", "",
        f"{report['generated']} on {host['cpus']} CPUs, Python {host['python']}, commit "
        f"{git['commit'][:12]}{' (with uncommitted changes)' if git['dirty'] else ''}.", "",
        "Every figure sits beside its baseline measured in the same run (the echo server of "
        "the same shape, the peer it is compared with, or the target where there is no peer). "
        "Ratio is value / baseline: for throughput and quality higher is better, for latency, "
        "CPU and error rates lower is better. Absolute figures vary between machines and under "
        "shared load; the ratios of one run do not.",
    ]
    written = []
    for title, stem, figures in sections(report["figures"]):
        lines += ["", f"## {title}", ""]
        if stem:
            path = directory / f"{stem}.png"
            PLOTS[stem](path, figures)
            written.append(path)
            lines += [f"![{title}]({path.name})", ""]
        lines += table(figures)
    failed = [run for run in report["runs"] if run["returncode"] != 0]
    if failed:
        lines += ["", "Failed: " + ", ".join(f"{r['name']} (exit {r['returncode']})"
                                             for r in failed)]
    markdown = directory / "report.md"
    markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [markdown, *written]


def table(figures: list[Figure]) -> list[str]:
    rows = ["| benchmark | figure | value | unit | baseline | ratio | target | met |",
            "|---|---|---:|---|---:|---:|---|---|"]
    for fig in figures:
        met = fig.get("meets_target")
        rows.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            fig["benchmark"], fig["figure"], number(fig["value"]), fig["unit"],
            number(fig["baseline"]), number(fig["ratio"]), fig.get("target", ""),
            "" if met is None else ("yes" if met else "**no**")))
    return rows


def _bars(path: Path, figures: list[Figure], xlabel: str) -> None:
    """Each figure's value against its baseline, one panel per unit."""
    units = sorted({str(fig["unit"]) for fig in figures})
    plot, axes = plt.subplots(len(units), 1, squeeze=False,
                              figsize=(10, 1.2 + 0.45 * len(figures) + 0.8 * len(units)))
    for axis, unit in zip(axes[:, 0], units, strict=True):
        group = [fig for fig in figures if fig["unit"] == unit]
        rows = range(len(group))
        axis.barh([r + 0.2 for r in rows], [_float(fig["baseline"]) for fig in group],
                  height=0.4, label="baseline (same run)", color=BASELINE)
        axis.barh([r - 0.2 for r in rows], [_float(fig["value"]) for fig in group],
                  height=0.4, label="singleid", color=SUBJECT)
        axis.set_yticks(list(rows), [f"{fig['benchmark']}: {fig['figure']}" for fig in group],
                        fontsize=7)
        axis.invert_yaxis()
        axis.set_xlabel(f"{xlabel} ({unit})")
        axis.legend(fontsize=7)
    plot.tight_layout()
    plot.savefig(path, dpi=110)
    plt.close(plot)


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _det(path: Path, figures: list[Figure]) -> None:
    """FRR against FAR on normal-deviate axes; each run's EER target as a marker."""
    inv = NormalDist().inv_cdf

    def nd(values: list[float]) -> list[float]:
        return [inv(min(max(v, 1e-4), 1 - 1e-4)) for v in values]

    plot, axis = plt.subplots(figsize=(6, 6))
    for fig in filter(is_det, figures):
        line, = axis.plot(nd(fig["det_far"]), nd(fig["det_frr"]),
                          label=f"{fig['figure']}: {number(fig['value'])}%")
        target = _float(fig["baseline"]) / 100
        if target > 0:
            axis.plot(nd([target]), nd([target]), "x", color=line.get_color(),
                      label=f"target EER {number(fig['baseline'])}%")
    axis.set_xticks(nd(DET_TICKS), [f"{t * 100:g}" for t in DET_TICKS])
    axis.set_yticks(nd(DET_TICKS), [f"{t * 100:g}" for t in DET_TICKS])
    low, high = nd([0.0005, 0.5])
    axis.set_xlim(low, high)
    axis.set_ylim(low, high)
    axis.set_xlabel("false accept rate (%)")
    axis.set_ylabel("false reject rate (%)")
    axis.grid(True, alpha=0.4)
    axis.legend(fontsize=7)
    plot.tight_layout()
    plot.savefig(path, dpi=110)
    plt.close(plot)


PLOTS: dict[str, Callable[[Path, list[Figure]], None]] = {
    "det": _det,
    "throughput": lambda path, figures: _bars(path, figures, "throughput"),
    "latency": lambda path, figures: _bars(path, figures, "latency"),
    "match_quality": lambda path, figures: _bars(path, figures, "quality"),
}
