"""``torwart-edge``: the site agent's command line."""

from __future__ import annotations

import argparse
import sys

from wire import software_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torwart-edge", description="Torwart site agent")
    parser.add_argument("--version", action="version", version=f"torwart-edge {software_version()}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
