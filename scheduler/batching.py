"""Primary-key batching: how every bulk write keeps its statements and transactions short.

Two shapes of one idea. `chunks` splits primary keys already in hand (an UPDATE ... WHERE pk IN
(...) per chunk, within the database's limit on parameters). `pk_batches` walks a queryset in
ascending primary-key order, reading each batch only after the caller has handled the one
before (keyset paging: rows the caller deleted or changed meanwhile do no harm), so a million
rows are never read, locked or held at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from django.db.models import QuerySet

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pk_batches(queryset: QuerySet[Any], size: int) -> Iterator[list[Any]]:
    """The primary keys of `queryset`, ascending, at most `size` at a time, read lazily."""
    after: Any = None
    while True:
        batch = queryset.order_by("pk")
        if after is not None:
            batch = batch.filter(pk__gt=after)
        ids = list(batch.values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        if len(ids) < size:
            return
        after = ids[-1]
