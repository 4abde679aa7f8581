"""The recipes behind the bundled models (``make models``).

:mod:`~instrument_classifier.recipes.mfcc` trains the MFCC CNN and Transformer (and their ensemble) on several
General MIDI sample libraries and tests them on a held-out one; :mod:`~instrument_classifier.recipes.musicnn`
trains the musicnn classifier on the same renders. The other modules are their steps:

    common            settings, sample libraries, the step log, JSON and sha256 helpers both recipes share
    sources           fetching a sample library; the proof that the held-out one shares no recording
    renders           render and perturb, forgetting renders made for another plan
    train_models      datasets, training runs, recording context, seed12 view and ensemble of the MFCC models
    results           each model's entry in an evaluation report, summarised and printed
    real_clips        a bundled folder measured on labelled real recordings
    cards             the MFCC folders' export and model cards
    musicnn_sources   the musicnn weights and the VirtualPlayingOrchestra samples, checked and recorded
    musicnn_renders   the musicnn stage's training corpora (VPO, distractors) and extra validation pieces
    musicnn_probe     the linear head on cached musicnn representations, window thresholds on validation
    musicnn_evaluation  clip thresholds tuned on real recordings; held-out test and real-clip results
    musicnn_card      the musicnn folder's card and export
"""
