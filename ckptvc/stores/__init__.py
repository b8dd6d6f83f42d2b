"""Stores: where bytes live. One interface for the cache, local directories, S3 and tiers."""

from ckptvc.stores.base import Store
from ckptvc.stores.factory import open_store
from ckptvc.stores.local import LocalStore

__all__ = ["LocalStore", "Store", "open_store"]
