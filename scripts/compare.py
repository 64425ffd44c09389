"""Compare finished runs side by side; runs that differ only in --seed become mean ± std."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aejax.startup import interruptible

with interruptible(__file__):  # a Ctrl-C while JAX is imported: one line, not a traceback
    from aejax import cli, compare, flags, plots, writable

OUT = "compare.png"  # the figure's name, also inside a folder given as --out


def figure_path(out: str) -> str:
    """Where --out writes: ``OUT`` inside a folder (existing, or named with a trailing slash);
    ``.png`` added to a name without an extension (``png`` to one ending in a dot)."""
    if Path(out).is_dir() or out.endswith(("/", os.sep)):
        return str(Path(out) / OUT)
    if Path(out).suffix:
        return out
    return f"{out}png" if out.endswith(".") else f"{out}.png"  # what matplotlib writes


def metric_names(text: str) -> tuple[str, ...]:
    """An argparse type: the comma-separated --keys, spaces and empty names dropped."""
    return tuple(k for k in (k.strip() for k in text.split(",")) if k)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, print the comparison as Markdown, draw compare.png."""
    parser = flags.OneLineParser(prog=Path(__file__).name, description=__doc__)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by train.py")
    parser.add_argument("--out", default=OUT, help=f"the figure (.png added to a name without "
                                                   f"an extension), or a folder to write {OUT} "
                                                   f"in (default: {OUT})")
    parser.add_argument("--by-run", action="store_true",
                        help="one row per run instead of grouping seeds")
    parser.add_argument("--keys", type=metric_names, default=compare.KEYS,
                        help="comma-separated metrics.json keys (default: "
                             f"{','.join(compare.KEYS)})")
    args = parser.parse_args(argv)
    if "" in args.runs:  # else the current folder, named by nothing in the error
        parser.error("a RUN is empty; give the run folders that train.py wrote")
    if not args.out:
        parser.error(f"--out is empty; give a file name such as {OUT}, or a folder")
    if not args.keys:
        parser.error(f"--keys needs at least one metric name, e.g. {compare.KEYS[1]}")

    def run() -> int:
        out = figure_path(args.out)
        writable.check_output_folder(out, "--out")
        plots.check_format(out, "--out")
        table = compare.table(args.runs, args.keys, group=not args.by_run)
        print(compare.format_markdown(table))
        plots.compare_figure(table, out)
        print(f"figure saved to {out}")
        return 0

    return cli.run_main(run, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
