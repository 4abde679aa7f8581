"""The recipes behind the bundled models (``make models``).

:mod:`~instrument_classifier.recipes.mfcc` trains the MFCC CNN and Transformer (and their ensemble) on several
General MIDI sample libraries and tests them on a held-out one; :mod:`~instrument_classifier.recipes.musicnn`
trains the musicnn classifier on the same renders. The other modules are their steps.
"""
