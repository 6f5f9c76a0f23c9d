"""The training loss curve (every training kind's finetune stage logs it)."""

from __future__ import annotations

from collections.abc import Sequence


def plot_loss(steps: Sequence[int], losses: Sequence[float], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=120)
    ax.plot(steps, losses, alpha=0.3, label="per step")
    window = max(1, len(losses) // 50)
    if window > 1:
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        ax.plot(steps, smooth, label=f"mean of {window}")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
