"""Loss terms and weights in nnU-Net's ``progress.png``.

nnU-Net draws a fixed set of curves. After it has written ``progress.png`` we append one more panel below
its figure with every method term logged per epoch, so a person sees the whole training in one picture.
"""
import os
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def append_terms_panel(output_folder: str, logged: Dict[str, List[float]], keys: Sequence[str]) -> None:
    """Redraw ``output_folder/progress.png`` as nnU-Net's figure plus a panel of the curves ``keys``."""
    path = os.path.join(output_folder, "progress.png")
    if not os.path.isfile(path):
        return
    stock = mpimg.imread(path)
    height, width = stock.shape[:2]
    dpi = 100
    panel_height = height / 3
    fig = plt.figure(figsize=(width / dpi, (height + panel_height) / dpi), dpi=dpi)
    top = fig.add_axes((0, panel_height / (height + panel_height), 1, height / (height + panel_height)))
    top.imshow(stock)
    top.axis("off")
    ax = fig.add_axes((0.08, 0.03, 0.84, 0.8 * panel_height / (height + panel_height)))
    for key in keys:
        values = logged.get(key, [])
        ax.plot(range(len(values)), values, label=key, linewidth=4)
    ax.set_xlabel("epoch", fontsize=30)
    ax.set_ylabel("method terms", fontsize=30)
    ax.tick_params(labelsize=24)
    ax.legend(loc=(0, 1), ncol=max(1, len(keys)), fontsize=24)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
