"""curves.png: the run's learning curves, loss and accuracy side by side, per epoch.

Loss and accuracy live on different scales (a loss of 2.3 would flatten accuracies in [0, 1]), so
each gets its own panel; epochs are whole numbers, and markers keep a one- or two-epoch run visible.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..outputs import write_atomic


def curves_figure(metrics: list[dict[str, float]], title: str) -> Any:
    """A matplotlib Figure with two panels: train loss, and train and test accuracy, per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [int(m["epoch"]) for m in metrics]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    loss_ax.plot(epochs, [m["train_loss"] for m in metrics], "o-", label="train")
    loss_ax.set_ylabel("cross-entropy loss")
    acc_ax.plot(epochs, [m["train_acc"] for m in metrics], "o-", label="train")
    acc_ax.plot(epochs, [m["test_acc"] for m in metrics], "s--", label="test")
    acc_ax.set_ylabel("accuracy")
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves(out: Path, metrics: list[dict[str, float]], title: str) -> None:
    """Write curves.png into `out` atomically."""
    import matplotlib.pyplot as plt
    fig = curves_figure(metrics, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(out / "curves.png", buf.getvalue())
