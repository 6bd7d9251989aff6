"""The default training recipe of each variant (measured on 2 cores, 20,000 images), and
the test accuracy each must reach on the official 10,000 test images."""

from __future__ import annotations

from .trainer import Recipe

DEFAULT_RECIPES = {
    "lenet5-modern": Recipe(variant="lenet5-modern", epochs=12, batch_size=64, lr=0.05),
    "lenet5": Recipe(variant="lenet5", epochs=15, batch_size=64, lr=0.05),
}
ACCURACY_TARGETS = {"lenet5-modern": 0.990, "lenet5": 0.988}


def default_recipe(variant: str) -> Recipe:
    return DEFAULT_RECIPES[variant]
