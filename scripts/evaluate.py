"""Evaluate a trained run on the whole occluded test set: metrics.json, figures, a table.

With --out DIR, the scores go to a new folder, and the test occlusion may change
(--occlusion-width 3, or --parts with another occlusion): the run itself is only read."""

from __future__ import annotations

import sys
from pathlib import Path

from aejax.startup import interruptible

with interruptible(__file__):  # a Ctrl-C while JAX is imported: one line, not a traceback
    from aejax import cli, compile_cache, crosseval, flags, report, writable


def main(argv: list[str] | None = None) -> int:
    """Parse flags, evaluate one run folder, print the table."""
    parser = flags.OneLineParser(prog=Path(__file__).name, description=__doc__)
    parser.add_argument("--workdir", required=True, help="a run folder written by train.py")
    parser.add_argument("--export", metavar="FILE.npz",
                        help="also save original, occluded, reconstructed images and labels "
                             "(.npz is added to a name without it)")
    parser.add_argument("--data-dir", type=flags.nonempty,
                        help="read the test set from this folder of IDX files instead of the "
                             "run's own --data-dir (the two t10k files are enough)")
    parser.add_argument("--data-root", type=flags.nonempty,
                        help="the data folder instead of the run's --data-root")
    parser.add_argument("--out", metavar="DIR",
                        help="write metrics.json and the figures to this new folder instead of "
                             "rewriting the run's (needed to change the test occlusion)")
    flags.add_config_flags(parser, crosseval.TESTED, default="the run's; with --out only")
    flags.add_parts_flag(parser, "evaluate a run trained")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not use JAX's persistent compilation cache")
    args = parser.parse_args(argv)
    changes = {k: getattr(args, k) for k in crosseval.TESTED if getattr(args, k) is not None}
    if args.workdir == "":  # else the current folder, silently
        parser.error("--workdir is empty; give a run folder written by train.py")
    if args.out == "":
        parser.error("--out is empty; give a folder")
    if args.export == "":  # else no arrays, silently
        parser.error("--export is empty; give a file name such as arrays.npz")
    if changes and args.out is None:
        parser.error(f"--{next(iter(changes)).replace('_', '-')} changes the test occlusion, and "
                     "the run's metrics.json keeps the scores on its own: give --out DIR, a new "
                     "folder for these")

    def run() -> int:
        if not args.no_compile_cache:
            compile_cache.enable()
        if args.export:
            writable.check_output_folder(str(report.export_path(args.export)), "--export",
                                         made=args.out)
        where = {"data_dir": args.data_dir, "data_root": args.data_root,
                 "parts": flags.parts_from_args(args)}
        metrics, arrays = (report.evaluate_into(args.workdir, args.out, changes=changes, **where)
                           if args.out is not None else report.evaluate_run(args.workdir, **where))
        data = metrics["data"]
        print(f"{args.out or args.workdir}: {data['test_size']} test images "
              f"({data.get('test_source', data.get('source', 'source not recorded'))})")
        print(report.format_table(metrics["test"]))
        if args.export:
            print(f"arrays saved to {report.export_arrays(arrays, args.export)}")
        return 0

    return cli.run_main(run, parser.prog, oom_hint="evaluate on a device with more memory "
                                                   "(JAX_PLATFORMS=cpu uses the host's)")


if __name__ == "__main__":
    sys.exit(main())
