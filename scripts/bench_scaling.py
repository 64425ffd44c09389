"""Measure training images/s against the number of devices (forced CPU devices, or real GPUs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aejax import cli, scaling


def int_list(text: str) -> list[int]:
    """Parse '1,2,4' into [1, 2, 4]."""
    return list(cli.positive_int_list(text))


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the sweep, print a Markdown table (and save JSON with --out)."""
    parser = cli.OneLineParser(prog=Path(__file__).name, description=__doc__)
    parser.add_argument("--devices", type=int_list, default=[1, 2, 4],
                        help="device counts, comma-separated (default: 1,2,4)")
    parser.add_argument("--batch-sizes", type=int_list, default=[32, 256, 1024],
                        help="global batch sizes, comma-separated (default: 32,256,1024)")
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch (2 epochs timed)")
    parser.add_argument("--out", help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)

    def run() -> int:
        rows = scaling.sweep(args.devices, args.batch_sizes, args.steps)
        print(f"{rows[0]['backend']} ({rows[0]['device_kind']}), images/s (speed-up):")
        print(scaling.table(rows))
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
        return 0

    return cli.run_main(run, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
