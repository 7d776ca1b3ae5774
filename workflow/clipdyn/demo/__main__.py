"""``python -m clipdyn.demo build|more-epochs``: build or extend the demo's local hub."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipdyn.demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train the demo models, render the datasets, publish them into DIR")
    b.add_argument("--hub", required=True, help="Hugging Face cache folder to create (use as HF_HUB_CACHE)")
    b.add_argument("--epochs", type=int, default=None, help="epochs per model (default: 8, or 4 with --scale ci)")
    b.add_argument("--scale", choices=["full", "ci"], default="full",
                   help="full: 3 models, 3072 training pairs; ci: 2 models, small sets (end-to-end tests)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--jobs", type=int, default=2, help="worker processes (results do not depend on it)")
    m = sub.add_parser("more-epochs", help="resume each model from its last epoch, publish N more as a new commit")
    m.add_argument("--hub", required=True)
    m.add_argument("--n", type=int, default=2, help="epochs to add (default 2)")
    m.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)

    from . import build as demo_build

    try:
        if args.command == "build":
            demo_build.build(args.hub, epochs=args.epochs, scale=args.scale, seed=args.seed, jobs=args.jobs)
        else:
            demo_build.more_epochs(args.hub, n=args.n, jobs=args.jobs)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
