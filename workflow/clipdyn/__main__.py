"""``python -m clipdyn plan``: what a study will download, hold and compute (clipdyn.plan)."""
import sys

COMMANDS = {"plan": "clipdyn.plan"}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        raise SystemExit(f"usage: python -m clipdyn {{{','.join(COMMANDS)}}} [options]")
    import importlib

    sys.exit(importlib.import_module(COMMANDS[sys.argv[1]]).main(sys.argv[2:]))
