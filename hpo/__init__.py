"""hpo: a BOHB hyperparameter-optimization service for transfer learning of image classifiers.

The package imports without torch: the master, the nameserver and the report run on light hosts.
"""

__version__ = "0.1.0"
