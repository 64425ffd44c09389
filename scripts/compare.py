"""Compare finished runs side by side; runs that differ only in --seed become mean ± std."""

from __future__ import annotations

import sys
from pathlib import Path

from aejax.startup import interruptible

with interruptible(__file__):  # a Ctrl-C while JAX is imported: one line, not a traceback
    from aejax import cli, compare, plots


def main(argv: list[str] | None = None) -> int:
    """Parse flags, print the comparison as Markdown, draw compare.png."""
    parser = cli.OneLineParser(prog=Path(__file__).name, description=__doc__)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by train.py")
    parser.add_argument("--out", default="compare.png", help="the figure (default: compare.png)")
    parser.add_argument("--by-run", action="store_true",
                        help="one row per run instead of grouping seeds")
    parser.add_argument("--keys", type=lambda s: tuple(s.split(",")), default=compare.KEYS,
                        help="comma-separated metrics.json keys (default: "
                             f"{','.join(compare.KEYS)})")
    args = parser.parse_args(argv)

    def run() -> int:
        out = args.out if Path(args.out).suffix else f"{args.out}.png"  # what matplotlib writes
        cli.check_output_folder(out, "--out")
        plots.check_format(out, "--out")
        table = compare.table(args.runs, args.keys, group=not args.by_run)
        print(compare.format_markdown(table))
        plots.compare_figure(table, out)
        print(f"figure saved to {out}")
        return 0

    return cli.run_main(run, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
