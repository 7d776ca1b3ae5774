"""``python -m clipdyn.demo build|more-epochs|local-run|publish-revisions|publish-final``: the demo's local hub
and checkpoint sources."""

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
    r = sub.add_parser("local-run", help="train a demo model into a local open_clip run folder, epoch by epoch "
                                         "(one file half-written for a while), for `make demo-local-run`")
    r.add_argument("--hub", required=True, help="the demo hub (for its training data and schedule)")
    r.add_argument("--out", required=True, help="run folder to create (open_clip's logs/<run>)")
    r.add_argument("--run", default="demo-s", help="demo model to train (default demo-s)")
    r.add_argument("--epochs", type=int, default=4)
    r.add_argument("--epoch-pause", type=float, default=0.0, help="seconds to wait after each epoch")
    r.add_argument("--half-written", type=int, default=2, help="epoch whose file is written in two halves")
    r.add_argument("--half-pause", type=float, default=30.0, help="seconds between the two halves")
    for name, what in (
            ("revisions", "publish a demo model's epochs as revisions (branches epoch-N) of <org>/<run>-steps"),
            ("final", "publish a demo model's last epoch as open_clip pretrained weights in <org>/<run>-final")):
        p = sub.add_parser(f"publish-{name}", help=what)
        p.add_argument("--hub", required=True)
        p.add_argument("--run", action="append", help="demo model(s) (default: every model of the hub)")
    args = parser.parse_args(argv)

    from . import build as demo_build

    try:
        if args.command == "build":
            demo_build.build(args.hub, epochs=args.epochs, scale=args.scale, seed=args.seed, jobs=args.jobs)
        elif args.command == "local-run":
            from ..fixtures import runs

            runs.local_run(args.hub, args.out, run=args.run, epochs=args.epochs, epoch_pause_s=args.epoch_pause,
                           half_written=args.half_written, half_pause_s=args.half_pause)
        elif args.command.startswith("publish-"):
            from ..fixtures import runs

            publish = runs.publish_revisions if args.command == "publish-revisions" else runs.publish_final
            for run in args.run or demo_build.load_manifest(args.hub)["models"]:
                print(f"{args.command} {run}: {publish(args.hub, run)}")
        else:
            demo_build.more_epochs(args.hub, n=args.n, jobs=args.jobs)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
