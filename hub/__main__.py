"""``torwart-hub``: the hub's command line."""

from __future__ import annotations

import argparse
import sys

from wire import software_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torwart-hub", description="Torwart hub")
    parser.add_argument("--version", action="version", version=f"torwart-hub {software_version()}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
