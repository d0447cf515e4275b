import sys

from .cli import main_simulate

sys.exit(main_simulate())
