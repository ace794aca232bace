"""Ordered map over an optional process pool, with a progress bar and a progress callback."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence


def ordered_map(
    fn: Callable,
    items: Sequence,
    *,
    jobs: int = 1,
    context=None,
    initializer=None,
    initargs: tuple = (),
    chunksize: int = 1,
    progress: bool = False,
    desc: str = "",
    unit: str = "item",
    on_progress: Callable[[int, int], None] | None = None,
    report_every: int = 1,
) -> Iterator:
    """Yield fn(item) for every item, in order; in `jobs` processes of `context` when jobs > 1.
    The pool is closed and joined, and the bar closed, however the caller stops iterating."""
    total = len(items)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
    pool = None
    try:
        if jobs > 1:
            pool = context.Pool(jobs, initializer=initializer, initargs=initargs)
            results = pool.imap(fn, items, chunksize=chunksize)
        else:
            results = map(fn, items)
        for done, result in enumerate(results, start=1):
            yield result
            if bar is not None:
                bar.update(1)
            if on_progress is not None and (done % report_every == 0 or done == total):
                on_progress(done, total)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            bar.close()
