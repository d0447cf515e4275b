"""``python -m streams worker -l info``: the Faust command line for the configured app."""
from .worker import main

if __name__ == "__main__":
    main()
