"""`pulse bench e2e`'s picture: freshness p50 and p99 against the offered rate, with and without the archive."""

from __future__ import annotations

from pathlib import Path

from pulse.bench.e2e import RunResult


def freshness_plot(runs: list[RunResult], path: Path) -> Path:
    """Draw every run's steps (the limit as a dashed line per run) into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to the file only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for run, colour in zip(runs, ("tab:blue", "tab:orange"), strict=False):
        label = "with the archive" if run.archive else "without the archive"
        rates = [s.offered / 1000 for s in run.steps]
        ax.plot(rates, [s.p(0.5) for s in run.steps], "o-", color=colour, label=f"p50, {label}")
        ax.plot(rates, [s.p(0.99) for s in run.steps], "s--", color=colour, label=f"p99, {label}")
        if run.steps:
            ax.axhline(run.steps[0].limit_s, color=colour, linestyle=":", linewidth=1,
                       label=f"p99 limit, {label}")
    ax.set_xlabel("offered events/s (thousands)")
    ax.set_ylabel("freshness: event to visible in a search (s)")
    ax.set_title("pulse bench e2e")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
