"""Dagster software-defined assets: thin wrappers over ``rotation_platform``."""

from assets.prices import PRICE_ASSETS, PRICE_CHECKS

ALL_ASSETS = [*PRICE_ASSETS]
ALL_CHECKS = [*PRICE_CHECKS]

__all__ = ["ALL_ASSETS", "ALL_CHECKS"]
