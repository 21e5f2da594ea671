r"""The profiling harness of ``stair-pyg bench`` and of the checkout's ``benchmarks/`` scripts:
:mod:`~stair_pyg.profiling.measure` (phase timing, memory meters, the conditions of a run),
:mod:`~stair_pyg.profiling.watchdog` (a child process under a memory watchdog and time limit),
:mod:`~stair_pyg.profiling.report` (JSON, Markdown, results sections, plots, fits) and
:mod:`~stair_pyg.profiling.bench` (every model's epoch and evaluation, phase by phase). It never
imports ``benchmarks``."""
from stair_pyg.profiling.measure import MemoryMeter, PhaseTimer, time_call
from stair_pyg.profiling.report import markdown_table, update_results_section, write_json
from stair_pyg.profiling.watchdog import run_watched, worker_record

__all__ = ["MemoryMeter", "PhaseTimer", "time_call", "markdown_table", "update_results_section",
           "write_json", "run_watched", "worker_record"]
