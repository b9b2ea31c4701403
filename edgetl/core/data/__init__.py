"""Datasets: what images there are, in which role, and each image decoded on demand.

- imageset.py: ImageSet (labelled images read lazily through a Loader), the crop memo
- splitting.py: stratified splits and samples, the data's fingerprint
- splits.py: Splits, the train, val and test sets of one dataset
- dataset.py: load_dataset of image folders, tar shards (shards.py) or digits (digits.py)
"""
