"""Benchmark training: JAX on-device epoch vs a jitted Python loop vs PyTorch, against the
roofline."""

from __future__ import annotations

import sys
from pathlib import Path

from aejax.startup import interruptible

with interruptible(__file__):  # a Ctrl-C while JAX is imported: one line, not a traceback
    from aejax import (bench_flags, bench_report, cli, compile_cache, jsonio, machine, scaling,
                       writable)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, measure, print the table (and write JSON with --out)."""
    parser = bench_flags.parser(Path(__file__).name, __doc__)
    args = bench_flags.parse(parser, argv)

    def run() -> int:
        machine.use_platform(args.device)  # before the options: their roofline size
        compile_cache.enable(off_flag=None)  # bench.py has no --no-compile-cache
        opts = bench_flags.options(args)
        if args.out is not None:
            writable.check_output_folder(args.out, "--out")
        scaling.check_counts(args.scaling, args.batch_sizes)
        try:
            images, source = bench_report.images(args.data_dir, args.num_images)
        except ValueError as err:  # a data error: say the folder was not given but inherited
            if not args.data_dir_from_env:
                raise
            raise ValueError(f"{err}; the folder is AEJAX_MNIST_DIR's: fix it, or unset it to "
                             "time random images") from None
        result = {"data": source, **bench_report.run(images, opts)}
        print(f"data: {source}\n{bench_report.table(result)}")
        if args.out is not None:  # atomically: a full disk keeps an earlier file whole
            again = "run bench.py again (this run's numbers are in the table above)"
            with writable.writing(Path(args.out), again):
                jsonio.write_json(result, args.out, sort_keys=False)  # the table's order
        failed = bench_report.failed_sections(result)
        if failed:  # the other measurements are printed (and written) all the same
            print(f"{parser.prog}: error: {', '.join(failed)} failed (see the table)",
                  file=sys.stderr)
            return 1
        return 0

    return cli.run_main(run, parser.prog,
                        oom_hint="lower --batch-sizes, --roofline-size or --num-images")


if __name__ == "__main__":
    sys.exit(main())
