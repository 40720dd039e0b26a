"""Store backends: LMDB (default) and in-memory, sharing one apply step."""

from .base import Appended, Pending, ReadTxn, Store, WriteTxn
from .lmdb import LmdbStore
from .memory import MemoryStore

__all__ = ["Appended", "LmdbStore", "MemoryStore", "Pending", "ReadTxn", "Store", "WriteTxn"]
