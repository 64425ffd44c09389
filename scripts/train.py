"""Train the occlusion-removing autoencoder and evaluate it (defaults: the original experiment)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from aejax.startup import interruptible

with interruptible(__file__):  # a Ctrl-C while JAX is imported: one line, not a traceback
    from aejax import (checkpoint, cli, compile_cache, experiment, flags, multihost, parallel,
                       resumesettings, sigint)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run (or resume) one experiment, print a summary line."""
    parser = flags.OneLineParser(prog=Path(__file__).name, description=__doc__)
    flags.add_config_flags(parser)
    parser.add_argument("--workdir", help="where results go (default: runs/<dataset>-...)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run")
    flags.add_checkpoint_flags(parser)
    flags.add_parts_flag(parser, "train (and resume)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not use JAX's persistent compilation cache")
    flags.add_parallel_flags(parser)
    args = parser.parse_args(argv)
    if args.resume and not args.workdir:
        parser.error("--resume needs --workdir RUN, the run to continue")
    if args.workdir == "":
        parser.error("--workdir is empty; leave it out for runs/<dataset>-...")

    def run() -> int:
        logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every save at INFO
        multihost.initialize(args.coordinator, args.num_processes, args.process_id)
        with cli.run_folder(args) as workdir:
            return train(workdir)

    def train(workdir: str) -> int:
        saved = resumesettings.resume_meta(workdir) if args.resume else {}  # read once

        def configure() -> tuple:  # flags and folders may differ between processes
            given = flags.given_config(parser, argv)
            cfg = (resumesettings.resume_config(saved, given, workdir)
                   if args.resume else flags.config_from_args(args))
            every, keep = resumesettings.checkpoint_options(saved, args.checkpoint_every, args.keep)
            checkpoint.check_options(every, keep)
            custom = flags.parts_from_args(args)
            flags.warn_unused(given, custom)
            return cfg, every, keep, resumesettings.resume_mesh(saved, args.devices), custom

        cfg, every, keep, mesh, custom = parallel.together(configure, "checking the flags")
        if not args.no_compile_cache:
            compile_cache.enable()
        try:
            m = experiment.run(cfg, workdir, progress=not args.no_progress,
                               overwrite=args.overwrite, resume=args.resume,
                               checkpoint_every=every, keep=keep, mesh=mesh, parts=custom)
        except sigint.Interrupted as stop:  # Ctrl-C or SIGTERM: a checkpoint was saved first
            print(f"{parser.prog}: {stop}", file=sys.stderr)
            return stop.exit_code
        if not parallel.is_main_process():
            return 0
        print(cli.summary_line(workdir, m))
        return 0

    return cli.run_main(run, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
