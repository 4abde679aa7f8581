"""Hugging Face Space entry point: which instruments play, and when.

The app itself is ``instrument_classifier.space_app`` (shared with ``instrument-classifier demo``).
On the Space, ``instrument-classifier push-space`` has put the package's runtime files (code and the
bundled models) next to this file, so it imports from here; in a source checkout it imports the
package one folder up (or the installed one).

Environment: ``MODEL_ID`` (Hub id or folder; default: the bundled models), ``MAX_UPLOAD_MB``,
``MAX_DURATION_S``.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:
    from instrument_classifier.space_app import build_demo, launch_kwargs
except ImportError:  # running space/app.py from a source checkout without installing the package
    sys.path.insert(0, str(HERE.parent))
    from instrument_classifier.space_app import build_demo, launch_kwargs

demo = build_demo(examples_dir=HERE / "examples")

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
