"""In-request dedup and a bounded LRU cache of scores across requests.

GRPO samples a group of answers per prompt and short answers repeat, so identical
(task, question, solution) items are scored once per request. With CoT sampling a duplicate
then gets the same sampled rationales as its twin (not fresh ones), which is what one verifier
call on that pair would give anyway; the cache extends this across requests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import TypeVar

V = TypeVar("V")


def unique(keys: Sequence[Hashable]) -> tuple[list[Hashable], list[int]]:
    """Distinct keys in first-seen order, and for each input key the index of its distinct key."""
    index: dict[Hashable, int] = {}
    where = [index.setdefault(k, len(index)) for k in keys]
    return list(index), where


class LRUCache:
    """At most ``size`` entries; the least recently used goes first. ``size=0`` stores nothing."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[Hashable, object] = OrderedDict()

    def get(self, key: Hashable):
        if key not in self._data:
            return None
        self._data.move_to_end(key)
        return self._data[key]

    def put(self, key: Hashable, value: object) -> None:
        if self.size <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
