import sys

from .cli import main

sys.exit(main(propagate_stop=False))
