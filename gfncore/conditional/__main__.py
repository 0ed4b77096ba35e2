"""`python -m gfncore.conditional ENV ...` is `gfncore train ENV ...` (give --conditional)."""
import sys

from ..cli import main as cli_main
from ..cli.common import USAGE


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not any(a == "--conditional" or a.startswith("--conditional=") for a in argv):
        print("give the context range: --conditional NAME=LOW:HIGH (e.g. beta=0.1:1.0)", file=sys.stderr)
        return USAGE
    return cli_main(["train", *argv])


if __name__ == "__main__":
    sys.exit(main())
