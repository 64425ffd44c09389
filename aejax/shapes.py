"""Compare the array shapes of two pytrees by path, to say how saved parameters differ from the
ones a model builds (``paramsfile.load``, ``checkpoint.Checkpointer.restore``)."""

from __future__ import annotations

from typing import Any

import jax


def leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """``{"params/dense_0/kernel": (784, 128), ...}``: every leaf's path and shape. Dict keys,
    attribute names and sequence indices all become path parts, so a checkpoint's metadata tree
    (plain dicts and lists) and the state it was saved from (dataclasses, tuples) match."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(_part(k) for k in path): tuple(leaf.shape) for path, leaf in leaves}


def _part(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def mismatch(saved: Any, wanted: Any, *, words: tuple[str, str, str] = ("saved", "now", "now")
             ) -> str | None:
    """How the shapes of ``saved`` differ from those of ``wanted`` (the first two differences
    and how many more), or None where they are the same. ``words`` name the two trees and the
    time of building in the message (``("given", "built", "")`` for parameters given in Python)."""
    got, want = leaf_shapes(saved), leaf_shapes(wanted)
    given, built, when = words
    found = [f"{p}: {got[p]} {given}, {want[p]} {built}" for p in want
             if p in got and got[p] != want[p]]
    found += [f"{p} is not {given}" for p in want if p not in got]
    found += [f"{p} is {given} but not built {when}".rstrip() for p in got if p not in want]
    if not found:
        return None
    more = f" and {len(found) - 2} more" if len(found) > 2 else ""
    return "; ".join(found[:2]) + more
