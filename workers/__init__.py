"""Job code run by hpo workers: data sets, models and the training loop.

The default job is :mod:`workers.image_classifier`; :mod:`workers.synthetic` is a cheap
stand-in objective for testing the service without torch.
"""
