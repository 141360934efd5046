"""What the live image is made of: its Debian packages (each feature declares its own, in
builder/features/) and the node-side Python packages."""

from __future__ import annotations

from builder import features
from builder.model import Cluster


def image_packages(cluster: Cluster) -> tuple[str, ...]:
    """Every Debian package of the image, sorted: each feature's and the admin's."""
    return tuple(sorted({*features.packages(cluster), *cluster.image.packages}))


# The Python packages that run on the nodes, copied from the checkout into the image.
NODE_PACKAGES = ("tyd", "chaosnode")
