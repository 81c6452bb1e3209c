"""A live dashboard of every run under a results directory (``hpo dashboard``)."""
