"""``python -m instrument_classifier.recipe``: the MFCC recipe (:mod:`instrument_classifier.recipes.mfcc`)."""

import sys

from .recipes.mfcc import main

if __name__ == "__main__":
    sys.exit(main())
