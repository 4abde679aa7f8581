"""Upload a model folder or the Gradio Space to the Hugging Face Hub.

``instrument-classifier push-model --repo-id USER/NAME [--model PATH]``
    Uploads a model folder (by default the bundled musicnn classifier, ``pretrained/musicnn``, a member of the
    default blend; or another bundled model by its name, ``yamnet``, ``efficientat``, ``cnn``, ...; or an
    ``instrument-classifier train`` output):
    safetensors weights,
    ``config.json``, ``preprocessor_config.json``, the model code written by ``save_pretrained``
    (so ``from_pretrained(..., trust_remote_code=True)`` works without this package), the model card
    and result JSONs. Trainer checkpoints, TensorBoard runs and pickles (``*.bin``, ``*.pt``) are
    left out; a folder without safetensors weights is refused, and so is an ensemble folder
    (``ensemble_config.json``: paths to other folders, which only this package loads; push its members).

``instrument-classifier push-space --repo-id USER/NAME``
    Uploads ``space/`` (from the checkout, or the copy an installed wheel carries as ``instrument_classifier/space``)
    as a Gradio Space together with the runtime part of this package
    (``instrument_classifier/*.py``, ``modeling/``, ``data/`` code, and the bundled models in
    ``pretrained/``), placed next to ``app.py``. The Space therefore runs the exact code and models
    of this checkout, offline, with no ``pip install`` of this (unpublished) package; its
    ``requirements.txt`` lists only third-party dependencies.

Both commands stage exactly the files to upload in a temporary folder, then call
``HfApi.create_repo(exist_ok=True)`` and ``HfApi.upload_folder`` once (one commit). The repository
then mirrors the folder: remote files that are not in the upload are deleted in the same commit
(``delete_patterns=["*"]``; the Hub keeps ``.gitattributes``), so a stale weight file or module
from an earlier push cannot linger.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional

from huggingface_hub import HfApi

from .ensemble import CONFIG_NAME, is_ensemble_folder

__all__ = [
    "HubError",
    "PACKAGE_DIR",
    "DEFAULT_SPACE_DIR",
    "model_files",
    "space_files",
    "stage_files",
    "push_model",
    "push_space",
    "add_push_model_arguments",
    "run_push_model",
    "add_push_space_arguments",
    "run_push_space",
]

PACKAGE_DIR = Path(__file__).resolve().parent
#: the one commit's default messages
MODEL_COMMIT_MESSAGE = "Upload {folder} model"
SPACE_COMMIT_MESSAGE = "Upload instrument-classifier Space"


def _default_space_dir() -> Path:
    # A wheel carries the Space's folder in the package (setup.py copies space/ there); a checkout (or an
    # editable install) has it next to the package.
    shipped = PACKAGE_DIR / "space"
    return shipped if (shipped / "app.py").is_file() else PACKAGE_DIR.parent / "space"


#: the Space's folder: ``instrument_classifier/space`` of an installed wheel, else ``space/`` of the checkout
DEFAULT_SPACE_DIR = _default_space_dir()

# Never uploaded from a model folder: trainer state, pickled objects (unsafe to load), logs.
_MODEL_EXCLUDE = ("checkpoint-*", "runs", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.tmp", ".*",
                  "__pycache__", "*.pyc", "trainer_state.json", "training_args.json")
_SPACE_EXCLUDE = ("__pycache__", "*.pyc", ".*", "*.tmp", "flagged", ".gradio")
# The package minus what only makes data (label excerpts and their script), the Space's own folder that a wheel
# carries (uploaded as the Space's top level instead), and anything generated.
_PACKAGE_EXCLUDE = ("excerpts", "space", "__pycache__", "*.pyc", ".*", "*.tmp", "checkpoint-*", "runs", "*.bin",
                    "*.pt", "*.pth")


class HubError(ValueError):
    """A folder that cannot be uploaded as asked; the message names it."""


def _excluded(rel: Path, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in patterns)


def _walk(root: Path, exclude: Iterable[str]) -> List[Path]:
    """Files under ``root`` (relative paths, sorted), skipping any path with an excluded component.

    Raises :class:`HubError` for a file that resolves outside ``root`` (a symbolic link such as
    ``notes.txt -> ~/.ssh/id_rsa``): staging copies what a link points to, and nothing but the folder's own
    files may be uploaded. Links to files inside the folder are uploaded as copies; linked folders are not
    entered.
    """
    exclude = tuple(exclude)
    inside = Path(root).resolve()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not _excluded(rel_dir / d, exclude))
        for name in filenames:
            rel = rel_dir / name
            if _excluded(rel, exclude):
                continue
            target = (Path(root) / rel).resolve()
            if not target.is_relative_to(inside):
                raise HubError(f"{Path(root) / rel}: a link to {target}, outside {root}; refusing to upload "
                               "anything but the folder's own files (remove the link, or copy the file in)")
            out.append(rel)
    return sorted(out)


def model_files(model_dir: str | os.PathLike) -> List[Path]:
    """The files of a model folder to upload (relative paths); raises :class:`HubError` if it is not one."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise HubError(f"{model_dir}: no such model folder")
    if not (model_dir / "config.json").is_file():

        if is_ensemble_folder(model_dir):
            raise HubError(_ensemble_refusal(model_dir, CONFIG_NAME))
        raise HubError(f"{model_dir}: no config.json; not a saved model folder (save_pretrained writes one)")
    files = _walk(model_dir, _MODEL_EXCLUDE)
    if not any(f.suffix == ".safetensors" for f in files):
        pickles = [f.name for f in model_dir.iterdir() if f.suffix in (".bin", ".pt", ".pth")]
        hint = f" (found {', '.join(pickles)}: pickled weights are not uploaded)" if pickles else ""
        raise HubError(f"{model_dir}: no *.safetensors weights{hint}")
    return files


def _ensemble_refusal(model_dir: Path, config_name: str) -> str:
    """Why an ensemble folder is not pushed, and what to push instead: its own members, as ``--model`` arguments."""

    try:
        listed = json.loads((model_dir / config_name).read_text())["members"]
        members = [(model_dir / m).resolve() for m in listed]
    except (OSError, ValueError, KeyError, TypeError):
        members = []
    # a bundled member by its name (push-model takes it from any directory), any other by its path
    bundled = (PACKAGE_DIR / "pretrained").resolve()
    arguments = [f"--model {m.name if m.parent == bundled else m}" for m in members]
    what = f" ({', '.join(arguments)})" if arguments else ""
    return (f"{model_dir}: an ensemble ({config_name}), a local-only choice: it holds no weights, only the paths "
            "of its member folders and the weights that blend them, and only this package can load it "
            f"(transformers' from_pretrained and pipeline cannot): push each member with its own --model{what}")


def space_files(space_dir: str | os.PathLike = DEFAULT_SPACE_DIR,
                package_dir: str | os.PathLike = PACKAGE_DIR) -> List[tuple[Path, Path]]:
    """``(source, path in the Space)`` pairs: ``space/`` plus the package's runtime files.

    Raises :class:`HubError` if ``space_dir`` lacks ``app.py``, ``README.md`` or ``requirements.txt``.
    """
    space_dir, package_dir = Path(space_dir), Path(package_dir)
    for name in ("app.py", "README.md", "requirements.txt"):
        if not (space_dir / name).is_file():
            raise HubError(f"{space_dir}: missing {name}; not a Space folder")
    pairs = [(space_dir / rel, rel) for rel in _walk(space_dir, _SPACE_EXCLUDE)]
    for rel in _walk(package_dir, _PACKAGE_EXCLUDE):
        top = rel.parts[0]
        if rel.suffix == ".py" or top == "pretrained":
            pairs.append((package_dir / rel, Path(package_dir.name) / rel))
    return pairs


def stage_files(pairs: Iterable[tuple[Path, Path]], dest: str | os.PathLike) -> List[Path]:
    """Copy ``(source, relative target)`` pairs into ``dest``; returns the relative targets."""
    dest = Path(dest)
    written = []
    for source, rel in pairs:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        written.append(Path(rel))
    return written


def _api(token: Optional[str]):
    return HfApi(token=token)


def push_model(repo_id: str, model_dir: str | os.PathLike, private: bool = False, token: Optional[str] = None,
               commit_message: Optional[str] = None):
    """Create (if needed) the model repo ``repo_id`` and upload the model folder in one commit.

    Returns the ``CommitInfo`` of ``HfApi.upload_folder``.
    """
    model_dir = Path(model_dir)
    files = model_files(model_dir)
    api = _api(token)
    with tempfile.TemporaryDirectory(prefix="push-model-") as staging:
        stage_files(((model_dir / f, f) for f in files), staging)
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=staging,
                                 commit_message=commit_message or MODEL_COMMIT_MESSAGE.format(folder=model_dir.name),
                                 delete_patterns=["*"])


def push_space(repo_id: str, space_dir: str | os.PathLike = DEFAULT_SPACE_DIR, private: bool = False,
               token: Optional[str] = None, model_id: Optional[str] = None, commit_message: Optional[str] = None):
    """Create (if needed) the Gradio Space ``repo_id`` and upload the app with the package's runtime files.

    ``model_id`` sets the Space variable ``MODEL_ID`` (the app then loads that Hub model instead of
    the bundled ones). Returns the ``CommitInfo`` of ``HfApi.upload_folder``.
    """
    pairs = space_files(space_dir)
    api = _api(token)
    with tempfile.TemporaryDirectory(prefix="push-space-") as staging:
        stage_files(pairs, staging)
        api.create_repo(repo_id=repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=staging,
                                 commit_message=commit_message or SPACE_COMMIT_MESSAGE,
                                 delete_patterns=["*"])
    if model_id:
        api.add_space_variable(repo_id=repo_id, key="MODEL_ID", value=model_id)
    return info


# --------------------------------------------------------------------------- command line


def _add_common(parser: argparse.ArgumentParser, default_message: str) -> None:
    parser.add_argument("--repo-id", required=True, metavar="USER/NAME", help="Hub repository to create or update")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", default=None,
                        help="Hub token with write access (default: HF_TOKEN or the `hf auth login` token)")
    parser.add_argument("--commit-message", default=None, metavar="TEXT",
                        help=f"message of the one commit the upload makes (default: {default_message!r})")


def add_push_model_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common(parser, MODEL_COMMIT_MESSAGE.format(folder="<folder>"))
    parser.add_argument("--model", type=Path, default=PACKAGE_DIR / "pretrained" / "musicnn",
                        help="model folder, or a bundled model's name (default: musicnn, a member of the bundled "
                             "default blend; its other members are yamnet and efficientat; also cnn, transformer); "
                             "an ensemble folder is refused (local only: push its members)")


def add_push_space_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common(parser, SPACE_COMMIT_MESSAGE)
    parser.add_argument("--space-dir", type=Path, default=DEFAULT_SPACE_DIR,
                        help=f"the Space folder (default: {DEFAULT_SPACE_DIR})")
    parser.add_argument("--model-id", default=None,
                        help="set the Space variable MODEL_ID to this Hub model (default: the bundled models)")


def _report(kind: str, repo_id: str, info) -> None:
    url = getattr(info, "commit_url", None) or str(info)
    print(f"{kind} {repo_id}: upload_folder returned {url}")


def _why(exc: BaseException) -> str:
    """huggingface_hub's message, preceded by what it means when the Hub could not be reached at all (its own
    words are then the resolver's, e.g. "Name or service not known")."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    cause: Optional[BaseException] = exc
    while cause is not None:
        if isinstance(cause, OfflineModeIsEnabled):
            return f"HF_HUB_OFFLINE is set, so nothing is sent to the Hub ({exc})"
        if isinstance(cause, (socket.gaierror, ConnectionError, TimeoutError)):
            return f"the Hub could not be reached (no network, or a proxy or HF_ENDPOINT problem): {exc}"
        cause = cause.__cause__ or cause.__context__
    return str(exc)


def run_push_model(args: argparse.Namespace) -> int:
    from .inference import bundled_folder  # loads torch: only once the command runs

    args.model = Path(bundled_folder(str(args.model)))  # a bundled model's name (musicnn, cnn, ...) from anywhere
    try:
        info = push_model(args.repo_id, args.model, private=args.private, token=args.token,
                          commit_message=args.commit_message)
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # network, authentication, permissions: huggingface_hub's message says which
        print(f"error: upload of {args.model} to {args.repo_id} failed: {_why(exc)}", file=sys.stderr)
        return 1
    _report("model", args.repo_id, info)
    return 0


def run_push_space(args: argparse.Namespace) -> int:
    try:
        info = push_space(args.repo_id, args.space_dir, private=args.private, token=args.token,
                          model_id=args.model_id, commit_message=args.commit_message)
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"error: upload of {args.space_dir} to Space {args.repo_id} failed: {_why(exc)}", file=sys.stderr)
        return 1
    _report("space", args.repo_id, info)
    return 0
