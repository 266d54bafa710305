"""`python -m collector.native`: build the compiled helper now (./sluice does at install) and print its path."""

import sys

from collector.native import NativeBuildError, build

try:
    print(build())
except NativeBuildError as error:
    print(error, file=sys.stderr)
    sys.exit(1)
