"""``python -m klarna_async`` is the ``klarna-async`` command."""

import sys

from klarna_async._cli import main

if __name__ == "__main__":
    sys.exit(main())
