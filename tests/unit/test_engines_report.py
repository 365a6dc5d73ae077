"""The engines benchmark's section of BENCHMARKS.md: replaced in place, kept by scripts/bench."""

from __future__ import annotations

from bench import engines_report
from bench.engines_report import END, ENGINES, START, Run, Tally


def a_run(latencies_ms: dict[str, list[float]]) -> Run:
    tallies = {
        engine: Tally([ms / 1000 for ms in latencies_ms[engine]], apiserver_cpu=0.01 * (i + 1))
        for i, engine in enumerate(ENGINES)
    }
    tallies["webhook"].webhook_cpu = 0.005
    return Run(
        command="python -m bench.engines",
        date="today",
        clients=2,
        rounds=1,
        machine={"CPU": "test"},
        tallies=tallies,
        rounds_cpu={engine: [1.0] for engine in ENGINES},
    )


def test_percentiles_are_nearest_rank() -> None:
    tally = Tally([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert tally.percentile_ms(50) == 50
    assert tally.percentile_ms(99) == 99
    assert Tally([0.004]).percentile_ms(99) == 4


def test_the_table_gives_each_engine_its_ratios_to_no_injection() -> None:
    run = a_run({"none": [10.0, 10.0], "webhook": [20.0, 40.0], "policy": [15.0, 15.0]})
    rows = engines_report.table(run)
    webhook = next(row for row in rows if row.startswith("| webhook"))
    cells = [cell.strip() for cell in webhook.strip("|").split("|")]
    # p50 20 ms over 10 ms; p99 40 over 10; CPU (20 ms API server + 5 ms webhook) per 2 Pods
    # over (10 ms) per 2 Pods.
    assert cells[-3:] == ["2.00 x", "4.00 x", "2.50 x"]
    assert cells[5] == "2.50 ms"


def test_a_new_section_is_appended_and_a_second_replaces_it() -> None:
    document = "# Benchmarks\n\nfigures\n"
    first = engines_report.section(a_run({e: [10.0] for e in ENGINES}))
    once = engines_report.splice(document, first)
    assert once.startswith(document.rstrip("\n"))
    assert once.count(START) == once.count(END) == 1
    second = engines_report.section(a_run({e: [30.0] for e in ENGINES}))
    twice = engines_report.splice(once + "after\n", second)
    assert twice.count(START) == 1
    assert "30.0 ms" in twice
    assert "10.0 ms" not in twice
    assert twice.endswith("after\n")


def test_a_rewrite_of_the_main_report_keeps_the_engines_section() -> None:
    old = engines_report.splice(
        "# old report\n", engines_report.section(a_run({e: [7.0] for e in ENGINES}))
    )
    kept = engines_report.carried(old)
    assert kept is not None
    rewritten = engines_report.splice("# new report\n", kept)
    assert rewritten.startswith("# new report")
    assert engines_report.carried(rewritten) == kept
    assert engines_report.carried("# no section\n") is None
