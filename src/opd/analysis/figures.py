"""Training-dynamics figures: the paper's token-level metrics and validation accuracy
against the step, one line per experiment (matplotlib, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (("val", "validation accuracy (avg@n)"), ("overlap_ratio", "top-k overlap ratio"),
          ("overlap_mass_student", "overlap mass (student)"),
          ("adv_intersection", "overlap-token advantage (adv_intersection)"), ("entropy_gap", "entropy gap |H(q)-H(p)|"))


def series(log_rows: list[dict], key: str, benchmark: str | None = None) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric; ``val`` is the mean over the validation benchmarks
    (or one of them)."""
    xs, ys = [], []
    for row in log_rows:
        if key == "val":
            val = row.get("val")
            if not val:
                continue
            value = val[benchmark] if benchmark else sum(val.values()) / len(val)
        elif key in row and row[key] is not None:
            value = row[key]
        else:
            continue
        xs.append(row["step"])
        ys.append(value)
    return xs, ys


def dynamics_figure(logs: dict[str, list[dict]], title: str, path) -> None:
    """Five panels side by side; writes a PNG to a path or binary file."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.4), constrained_layout=True)
    for ax, (key, label) in zip(axes, PANELS):
        for name, rows in logs.items():
            xs, ys = series(rows, key)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 12 else None, markersize=3, label=name)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
