"""``python -m instrument_classifier.recipe_musicnn``: the musicnn recipe
(:mod:`instrument_classifier.recipes.musicnn`)."""

import sys

from .recipes.musicnn import main

if __name__ == "__main__":
    sys.exit(main())
