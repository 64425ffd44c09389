"""scripts/bench.py's flags: what to measure, how long, and where the images come from."""

from __future__ import annotations

import argparse
import os

from aejax import bench_report, flags


def roofline_size(text: str) -> int:
    """An argparse type: a matmul side large enough to time arithmetic, not the launch."""
    value, least = flags.positive_int(text), bench_report.MIN_ROOFLINE_SIZE
    if value < least:
        raise argparse.ArgumentTypeError(f"expected at least {least} (a smaller matmul times "
                                         f"its launch, not the arithmetic), got {text!r}")
    return value


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """bench.py's parser (errors as one line)."""
    parser = flags.OneLineParser(prog=prog, description=description)
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
                        help="MNIST IDX folder, or '' for random images (default: "
                             "$AEJAX_MNIST_DIR, else random images)")
    parser.add_argument("--num-images", type=count,  # None: not given (checked in parse)
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
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The flags, with ``data_dir`` from ``AEJAX_MNIST_DIR`` when not given (``data_dir_from_env``
    says so), ``num_images`` only for random images and every size or count once."""
    args = parser.parse_args(argv)
    args.data_dir_from_env = args.data_dir is None and bool(os.environ.get("AEJAX_MNIST_DIR"))
    if args.data_dir_from_env:
        args.data_dir = os.environ["AEJAX_MNIST_DIR"]
    if args.num_images is not None and args.data_dir:  # else silently 60,000 MNIST images
        source = (f"AEJAX_MNIST_DIR ({args.data_dir}): unset it (or pass --data-dir '') to time "
                  "random images, or drop --num-images" if args.data_dir_from_env else
                  f"--data-dir {args.data_dir}: drop one of the two")
        parser.error(f"--num-images counts random images, but the images come from {source}")
    args.num_images = 60000 if args.num_images is None else args.num_images
    if args.out is not None and not args.out:
        parser.error("--out is empty; give a file name such as bench.json")
    # a size or count named twice is measured once (and shown once)
    args.batch_sizes, args.scaling = (tuple(dict.fromkeys(v)) for v in (args.batch_sizes,
                                                                         args.scaling))
    return args


def options(args: argparse.Namespace) -> bench_report.Options:
    """What ``bench_report.run`` measures, from the parsed flags."""
    # train.py runs from the repository root: a relative folder would mean another one there
    train_args = ["--data-dir", os.path.abspath(args.data_dir)] if args.data_dir else []
    return bench_report.Options(
        batch_sizes=args.batch_sizes, loop_steps=args.steps, torch_steps=args.steps,
        repeats=args.repeats, torch=not args.no_torch,
        roofline_size=args.roofline_size or bench_report.default_roofline_size(),
        compile=not args.no_compile, scaling_devices=args.scaling,
        train_script_args=train_args if args.train_script else None,
        progress=not args.no_progress)
