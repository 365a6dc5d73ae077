"""`python -m bench.engines` on a few Pods, so it never rots (not in CI's quick bench: it starts
a control plane of its own). Its figures are not asserted; its bookkeeping is."""

from __future__ import annotations

from pathlib import Path

from bench import engines
from bench.engines_report import END, START


def test_the_engines_benchmark_creates_every_pod_and_writes_only_its_section(
    tmp_path: Path,
) -> None:
    output = tmp_path / "BENCHMARKS.md"
    output.write_text("# Benchmarks\n\nthe main report\n", encoding="utf-8")
    said: list[str] = []
    argv = ["--pods", "6", "--clients", "2", "--rounds", "3", "--output", str(output)]
    assert engines.main(argv, progress=said.append) == 0, said
    text = output.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nthe main report\n")
    section = text[text.index(START) : text.index(END)]
    for title in ("| no injection | 6 |", "| webhook (`envoy-injector serve`) | 6 |",
                  "| policy (MutatingAdmissionPolicy) | 6 |"):  # fmt: skip
        assert title in section
    assert [m for m in said if m.startswith("round")] == [
        f"round {r}/3: 2 Pods, {engine}"
        for r, order in (
            (1, "none webhook policy"),
            (2, "webhook policy none"),
            (3, "policy none webhook"),
        )
        for engine in order.split()
    ]
