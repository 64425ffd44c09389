"""Evaluate a trained run on the whole occluded test set: metrics.json, figures, a table."""

from __future__ import annotations

import sys
from pathlib import Path

from aejax.startup import interruptible

with interruptible(__file__):  # a Ctrl-C while JAX is imported: one line, not a traceback
    from aejax import cli, compile_cache, report


def main(argv: list[str] | None = None) -> int:
    """Parse flags, evaluate one run folder, print the table."""
    parser = cli.OneLineParser(prog=Path(__file__).name, description=__doc__)
    parser.add_argument("--workdir", required=True, help="a run folder written by train.py")
    parser.add_argument("--export", metavar="FILE.npz",
                        help="also save original, occluded, reconstructed images and labels "
                             "(.npz is added to a name without it)")
    parser.add_argument("--data-dir", help="read the test set from this folder of IDX files "
                                           "instead of the run's own --data-dir")
    parser.add_argument("--data-root", help="the data folder instead of the run's --data-root")
    cli.add_parts_flag(parser, "evaluate a run trained")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not use JAX's persistent compilation cache")
    args = parser.parse_args(argv)

    def run() -> int:
        if not args.no_compile_cache:
            compile_cache.enable()
        if args.export:
            cli.check_output_folder(args.export, "--export")
        custom = cli.parts_from_args(args)
        metrics, arrays = report.evaluate_run(args.workdir, data_dir=args.data_dir,
                                              data_root=args.data_root, parts=custom)
        data = metrics["data"]
        print(f"{args.workdir}: {data['test_size']} test images "
              f"({data.get('test_source', data['source'])})")
        print(report.format_table(metrics["test"]))
        if args.export:
            print(f"arrays saved to {report.export_arrays(arrays, args.export)}")
        return 0

    return cli.run_main(run, parser.prog, oom_hint="evaluate on a device with more memory "
                                                   "(JAX_PLATFORMS=cpu uses the host's)")


if __name__ == "__main__":
    sys.exit(main())
