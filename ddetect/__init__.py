"""Application glue: the ``ddetect`` command line, configuration and metrics."""
