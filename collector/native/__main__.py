"""`python -m collector.native`: build the compiled helper now (./sluice does at install) and print its path."""

import sys

from collector.native.build import build

try:
    print(build())
except Exception as error:
    print(f"the compiled flow helper did not build: {error}", file=sys.stderr)
    sys.exit(1)
