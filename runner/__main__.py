import sys

try:
    import pytest  # noqa: F401  (only: is it there?)
except ImportError:
    sys.stderr.write("sockprobe: error: this python (%s) has no pytest; run scripts/deps.sh "
                     "or `make check`, which installs it\n" % sys.executable)
    sys.exit(2)

from .cli import main

sys.exit(main())
