"""undertow's pure library: schemas, mergeable histograms, drift statistics, baselines.

Nothing here imports a broker or a store client, so every piece is testable on its own and
the same code runs in the batch check and in the streaming workers.
"""

__version__ = "0.1.0"
