"""The ``catdog`` command installed with the wheel: the same command line as the Rust binary, in this process."""

import sys

from . import _native


def main() -> None:
    sys.exit(_native.main(["catdog", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
