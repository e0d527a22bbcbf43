"""The original exception inside Ray's wrappers: what a task or actor really raised.

Used wherever ecomine runs its own code in Ray tasks or actors and wants a known
error (a DataError, a ScoreError, a ModelLoadError) back as itself: Ray wraps it in
RayTaskError / UserCodeException, with the original further down the cause chain.
Imports Ray only when called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["original_error", "surfaced"]


def original_error(exc: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of `types` down `exc`'s cause chain that is not one of Ray's own (None: none)."""
    from ray.exceptions import RayError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, types) and not isinstance(cause, RayError):
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
    return None


@contextlib.contextmanager
def surfaced(types: tuple[type[BaseException], ...], as_type: type[Exception]) -> Iterator[None]:
    """Inside: an exception of `types` raised in a Ray task or actor comes out as `as_type(message)`,
    one line, instead of Ray's wrapper; `as_type` itself passes through; anything else is re-raised."""
    try:
        yield
    except as_type:
        raise
    except Exception as exc:
        cause = original_error(exc, types)
        if cause is not None:
            raise as_type(str(cause)) from None
        raise
