"""Report figures as PNG bytes (matplotlib, headless): confusion matrices and learning
curves. The caller writes them (whole, under a temporary name first)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def plot_confusion(counts: np.ndarray, classes: list[str], title: str) -> bytes:
    """Counts and row-normalised % side by side [counts shape=(k, k)], as PNG."""
    plt = _pyplot()
    k = len(classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = 100 * counts / counts.sum(1, keepdims=True)
    size = 1.2 + 0.6 * k
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.5, size + 1.0), layout="constrained")
    try:
        for ax, values, fmt, name in ((axes[0], counts, "{:d}", "counts"),
                                      (axes[1], pct, "{:.0f}%", "% of the true class")):
            shown = np.nan_to_num(values.astype(np.float64))
            ax.imshow(shown, cmap="Blues", vmin=0, vmax=max(shown.max(), 1e-9))
            for i in range(k):
                for j in range(k):
                    v = values[i, j]
                    text = "–" if np.isnan(v) else fmt.format(int(v) if name == "counts"
                                                              else v)
                    ax.text(j, i, text, ha="center", va="center", fontsize=8,
                            color="white" if shown[i, j] > 0.6 * shown.max() else "black")
            ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
            ax.set_yticks(range(k), classes, fontsize=8)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(name, fontsize=9)
        fig.suptitle(title, fontsize=9)
        return _png(fig)
    finally:
        plt.close(fig)


def plot_curves(epochs: pd.DataFrame, title: str) -> bytes:
    """Training and validation loss per epoch: one thin line per (seed, fold), their mean
    bold, each fold's chosen epoch (its last ``best`` epoch) circled; as PNG."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True, layout="constrained")
    try:
        seeds = sorted(epochs["seed"].unique())
        colours = plt.get_cmap("tab10")
        for (s, _), g in epochs.groupby(["seed", "fold"], sort=True):
            g = g.sort_values("epoch")
            colour = colours(seeds.index(s) % 10)
            best = g[g["best"].astype(bool)]
            chosen = best.iloc[-1] if len(best) else g.iloc[-1]
            for ax, col in zip(axes, ("train_loss", "val_loss"), strict=True):
                ax.plot(g["epoch"], g[col], lw=0.8, alpha=0.55, color=colour)
                if pd.notna(chosen[col]):
                    ax.plot(chosen["epoch"], chosen[col], "o", ms=5, mfc="none", color=colour)
        for ax, col, name in zip(axes, ("train_loss", "val_loss"),
                                 ("training loss", "validation loss"), strict=True):
            mean = epochs.groupby("epoch")[col].mean()
            if mean.notna().any():
                ax.plot(mean.index, mean.to_numpy(), lw=2.5, color="black")
            else:
                ax.text(0.5, 0.5, "no validation split:\nthe last epoch is kept",
                        ha="center", va="center", transform=ax.transAxes)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss")
            ax.set_title(name, fontsize=9)
        handles = [Line2D([], [], lw=0.8, color="grey", label="one fold"),
                   Line2D([], [], lw=2.5, color="black", label="mean of the folds running"),
                   Line2D([], [], ls="", marker="o", mfc="none", color="grey",
                          label="chosen epoch")]
        if len(seeds) > 1:
            handles += [Line2D([], [], lw=0.8, color=colours(i % 10), label=f"seed {s}")
                        for i, s in enumerate(seeds[:10])]
        axes[0].legend(handles=handles, fontsize=8)
        fig.suptitle(title, fontsize=9)
        return _png(fig)
    finally:
        plt.close(fig)
