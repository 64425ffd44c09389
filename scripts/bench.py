"""Benchmark training: JAX on-device epoch vs a jitted Python loop vs PyTorch, against the
roofline."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from aejax.startup import interruptible

with interruptible(__file__):  # a Ctrl-C while JAX is imported: one line, not a traceback
    from aejax import bench_report, cli, compile_cache, flags, scaling, writable


def roofline_size(text: str) -> int:
    """An argparse type: a matmul side large enough to time arithmetic, not the launch."""
    value, least = flags.positive_int(text), bench_report.MIN_ROOFLINE_SIZE
    if value < least:
        raise argparse.ArgumentTypeError(f"expected at least {least} (a smaller matmul times "
                                         f"its launch, not the arithmetic), got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Parse flags, measure, print the table (and write JSON with --out)."""
    parser = flags.OneLineParser(prog=Path(__file__).name, description=__doc__)
    ints, count = flags.positive_int_list, flags.positive_int
    parser.add_argument("--device", choices=("cpu", "gpu"), help="platform (default: JAX's)")
    parser.add_argument("--batch-sizes", type=ints, default=(32, 256, 1024), metavar="32,256,1024",
                        help="batch sizes to time (default: 32,256,1024)")
    parser.add_argument("--steps", type=count, default=300,
                        help="timed steps of loop and torch per turn (default: 300)")
    parser.add_argument("--repeats", type=count, default=10,
                        help="turns of every variant; the best and the median count (default: 10)")
    parser.add_argument("--roofline-size", type=roofline_size,
                        help="side of the roofline's square matmul, at least "
                             f"{bench_report.MIN_ROOFLINE_SIZE} (default: 1024 on a CPU, 8192 on "
                             "a GPU, where a small one measures launch overhead)")
    parser.add_argument("--data-dir",
                        help="MNIST IDX folder (default: $AEJAX_MNIST_DIR, else random images)")
    parser.add_argument("--num-images", type=count, default=60000,
                        help="random images' count, without --data-dir (default: 60000)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    parser.add_argument("--no-compile", action="store_true", help="skip cold/warm compile times")
    parser.add_argument("--train-script", action="store_true",
                        help="also time scripts/train.py end to end twice (wall, peak RSS)")
    parser.add_argument("--scaling", type=ints, default=(), metavar="1,2,4",
                        help="also measure images/s on these device counts (speed-up "
                        "against the fewest)")
    parser.add_argument("--out", help="write every measurement to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    from_env = args.data_dir is None and bool(os.environ.get("AEJAX_MNIST_DIR"))
    if from_env:
        args.data_dir = os.environ["AEJAX_MNIST_DIR"]
    if args.out is not None and not args.out:
        parser.error("--out is empty; give a file name such as bench.json")
    # a size or count named twice is measured once (and shown once)
    args.batch_sizes, args.scaling = (tuple(dict.fromkeys(v)) for v in (args.batch_sizes,
                                                                         args.scaling))

    def run() -> int:
        bench_report.use_platform(args.device)
        compile_cache.enable(off_flag=None)  # bench.py has no --no-compile-cache
        # train.py runs from the repository root: a relative folder would mean another one there
        train_args = ["--data-dir", os.path.abspath(args.data_dir)] if args.data_dir else []
        opts = bench_report.Options(
            batch_sizes=args.batch_sizes, loop_steps=args.steps, torch_steps=args.steps,
            repeats=args.repeats, torch=not args.no_torch,
            roofline_size=args.roofline_size or bench_report.default_roofline_size(),
            compile=not args.no_compile, scaling_devices=args.scaling,
            train_script_args=train_args if args.train_script else None,
            progress=not args.no_progress)
        if args.out is not None:
            writable.check_output_folder(args.out, "--out")
        scaling.check_counts(args.scaling, args.batch_sizes)
        try:
            images, source = bench_report.images(args.data_dir, args.num_images)
        except ValueError as err:  # a data error: say the folder was not given but inherited
            if not from_env:
                raise
            raise ValueError(f"{err}; the folder is AEJAX_MNIST_DIR's: fix it, or unset it to "
                             "time random images") from None
        result = {"data": source, **bench_report.run(images, opts)}
        print(f"data: {source}\n{bench_report.table(result)}")
        if args.out is not None:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
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
