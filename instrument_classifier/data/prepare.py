"""``instrument-classifier prepare``: MusicNet-layout folders -> a ``datasets.DatasetDict`` of feature windows.

Splits
------
``test`` is MusicNet's own test split. ``validation`` is carved out of MusicNet's train split **by piece**
(MusicNet id): every rendering of a piece lands in the same split, so no piece is in two splits. The choice
is stratified and deterministic given ``seed``: pieces are shuffled, then for each label, rarest first, that
occurs in at least two train pieces and is not yet in validation, the piece with that label adding the most
still-missing labels moves to validation, unless it is the last train piece of some label. The remaining
quota is filled from the shuffled order under the same rule. On tiny corpora this can take more than
``validation_fraction`` of the pieces, so that every label that can be validated is.

With held-out corpora (another sample library), validation and test windows come from them instead. The
validation recordings can come from corpora of their own (``validation_data_dirs``): then the pieces are
chosen among all train pieces (:func:`plan_validation_pieces` tells which beforehand, so that only those need
rendering, and in full) and those corpora must hold every one of them.

Windows
-------
Features are computed once per recording over the whole file (``extract(..., normalize=False)``: rows hold
RAW features; the normalisation fitted on ``train`` is saved in ``output/feature_extractor/``), then cut
into windows of ``window_frames`` frames (default 256 = 2.97 s at 44.1 kHz, hop 512: long enough for
several notes with their attacks and decays, short enough to localise instruments and to batch cheaply).

* ``train`` windows start every ``hop_frames`` (default 128, 50 % overlap): twice the examples, and every
  note is seen both near the middle and near the edge of some window (a free time-shift augmentation).
* ``validation`` and ``test`` windows do not overlap, so every frame is scored exactly once.
* The tail shorter than a window, and a recording shorter than one window, are zero-padded: the audio is
  extended with digital silence before feature extraction (so padded frames hold the features of silence,
  exactly what the model sees for silence at inference, not arbitrary zeros) and their ``frame_labels`` are
  0 (nothing sounds there). A final window is dropped only if fewer than a quarter of its frames are real
  audio and it is not the recording's only window: at most 63 frames (0.73 s) at a recording's end are
  lost that way in validation/test, none in train with 50 % overlap (the previous window covers them), and
  no recording is ever lost for being short.
* The normalisation (per-coefficient mean/std) is fitted on the train windows exactly as the model sees
  them: overlapping frames count twice, padded frames count.

Bad input
---------
Every recording is checked before any feature is computed (pairing, the whole label CSV, the taxonomy, the
audio header); decoding problems (truncated data, NaN samples) surface while its features are computed.
Either way the error names the file (and CSV row). With ``skip_bad`` the recording is skipped with a warning
instead and listed in ``prepare_info.json["skipped"]``; the summary prints how many.

Caching and memory
------------------
Rows are generated recording by recording with ``Dataset.from_generator`` (memory is one recording's audio
and STFT per worker, about 1.5 GB for MusicNet's longest, 18-minute recording; never the corpus), sharded by
recording list so ``num_proc`` workers produce identical rows in the same order. Each split gets a
``fingerprint`` hashing the code version, every parameter and every input file's (path, size, mtime_ns): a
rerun reuses the ``datasets`` cache, a changed label or audio file or parameter rebuilds. If ``output``
already holds a dataset with the same fingerprint it is kept as is.

Output (written to a temporary folder next to ``output`` and moved into place with ``os.replace``; a run that
is killed leaves no partial ``output``, the next run deletes its temporary folder and, with the same cache,
continues from the splits already generated; rows and files are byte-identical for any ``num_proc``)::

    output/dataset_dict.json, train/, validation/, test/    DatasetDict.save_to_disk
    output/feature_extractor/preprocessor_config.json      mean/std fitted on train
    output/prepare_info.json                               taxonomy, labels, windows, per-split counts, fingerprint
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from datasets import Array2D, Dataset, DatasetDict, Features, Value, load_from_disk
from datasets import List as FeatureList  # typing.List is taken
from datasets.exceptions import DatasetGenerationError
from huggingface_hub import CommitOperationAdd, DatasetCardData, HfApi
from tqdm.auto import tqdm

from ..atomic_write import replace_dir
from ..local_paths import strip_local_paths
from ..modeling.feature_extraction_instrument import InstrumentFeatureExtractor
from ..training.model_card import describe_corpus
from ..audio import AudioError, audio_info, load_audio
from .musicnet import (
    MUSICNET_SR, MusicNetError, find_musicnet_root, frame_activity, label_indices, list_recordings, read_labels,
)
from .taxonomy import DEFAULT_TAXONOMY, UnknownInstrumentError, get_taxonomy

__all__ = [
    "CODE_VERSION",
    "SPLIT_NAMES",
    "build_dataset",
    "load_prepared",
    "read_info",
    "window_starts",
    "choose_validation_pieces",
    "plan_validation_pieces",
    "push_prepared",
    "dataset_card",
]

#: Bump when the rows produced for the same inputs change: it is part of every fingerprint.
CODE_VERSION = "prepare-1"
SPLIT_NAMES = ("train", "validation", "test")
INFO_FILE = "prepare_info.json"
EXTRACTOR_DIR = "feature_extractor"
#: A final partial window is kept when at least this fraction of it is real audio.
MIN_TAIL_FRACTION = 0.25

PathLike = Union[str, os.PathLike]


# -- windows and validation pieces --------------------------------------------------------------------

def window_starts(num_frames: int, window_frames: int, hop_frames: int) -> List[int]:
    """First frame of every window over ``num_frames`` real frames (see "Windows" in the module doc)."""
    starts = [0]
    while starts[-1] + window_frames < num_frames:
        starts.append(starts[-1] + hop_frames)
    if len(starts) > 1 and num_frames - starts[-1] < MIN_TAIL_FRACTION * window_frames:
        starts.pop()
    return starts


def choose_validation_pieces(piece_labels: Dict[str, set], validation_fraction: float, seed: int = 0) -> List[str]:
    """Pieces (MusicNet ids) for validation, stratified by label; see "Splits" in the module doc."""
    pieces = sorted(piece_labels)
    if validation_fraction <= 0 or len(pieces) < 2:
        return []
    quota = min(len(pieces) - 1, max(1, round(validation_fraction * len(pieces))))
    order = [pieces[i] for i in np.random.default_rng(seed).permutation(len(pieces))]
    train_count = {}  # label -> number of train pieces with it
    for piece in pieces:
        for label in piece_labels[piece]:
            train_count[label] = train_count.get(label, 0) + 1
    chosen: List[str] = []

    def movable(piece: str) -> bool:  # moving it keeps every label in train
        return piece not in chosen and all(train_count[label] > 1 for label in piece_labels[piece])

    def move(piece: str) -> None:
        chosen.append(piece)
        for label in piece_labels[piece]:
            train_count[label] -= 1

    covered = set()
    for label in sorted(train_count, key=lambda lab: (train_count[lab], lab)):
        if label in covered or train_count[label] < 2:
            continue
        candidates = [p for p in order if label in piece_labels[p] and movable(p)]
        if candidates:
            best = max(candidates, key=lambda p: len(piece_labels[p] - covered))  # first in order on ties
            move(best)
            covered |= piece_labels[best]
    for piece in order:
        if len(chosen) >= quota:
            break
        if movable(piece):
            move(piece)
    return sorted(chosen, key=pieces.index)


# -- planning: which recording goes where ------------------------------------------------------------

def _plan_corpus(data_dir: PathLike, taxonomy, skip_bad: bool, skipped: list) -> List[dict]:
    """Check every recording of one corpus up front (labels fully, audio header) and describe it as a job."""
    root = find_musicnet_root(data_dir)
    corpus = Path(data_dir).resolve().name
    jobs = []
    for rec in list_recordings(root, skip_bad=skip_bad, skipped=skipped):
        try:
            notes = read_labels(rec.labels_path)
            labels = sorted(set(label_indices(notes, taxonomy, str(rec.labels_path)).tolist()))
            audio_info(rec.audio_path)
        except (MusicNetError, UnknownInstrumentError, AudioError) as exc:
            if not skip_bad:
                raise
            warnings.warn(f"skipping recording {corpus}/{rec.id}: {exc}", stacklevel=2)
            skipped.append((f"{corpus}/{rec.id}", str(exc)))
            continue
        jobs.append({
            "recording_id": f"{corpus}/{rec.id}",
            "piece_id": rec.id,
            "split": rec.split,
            "audio_path": str(rec.audio_path.resolve()),
            "labels_path": str(rec.labels_path.resolve()),
            "labels": labels,
        })
    return jobs


def _plan_corpora(data_dirs: Sequence[PathLike], taxonomy, skip_bad: bool, skipped: list) -> List[dict]:
    names = [Path(d).resolve().name for d in data_dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"data directories must have distinct folder names (they prefix recording ids): {names}")
    return [job for d in data_dirs for job in _plan_corpus(d, taxonomy, skip_bad, skipped)]


def _validation_pieces(train_pool: List[dict], candidates: set, validation_fraction: float, seed: int) -> set:
    piece_labels: Dict[str, set] = {}
    for job in train_pool:
        if job["piece_id"] in candidates:
            piece_labels.setdefault(job["piece_id"], set()).update(job["labels"])
    return set(choose_validation_pieces(piece_labels, validation_fraction, seed))


def _assign_splits(jobs: List[dict], eval_jobs: Optional[List[dict]], validation_fraction: float,
                   seed: int, val_jobs: Optional[List[dict]] = None) -> Dict[str, List[dict]]:
    test_source = jobs if eval_jobs is None else eval_jobs
    train_pool = [j for j in jobs if j["split"] == "train"]
    test = [j for j in test_source if j["split"] == "test"]
    leaked = sorted({j["piece_id"] for j in train_pool} & {j["piece_id"] for j in test})
    if leaked:
        raise MusicNetError(f"pieces {leaked} are in the train split of one corpus and the test split of another")
    if val_jobs is not None:  # corpora of the validation pieces alone: the choice is among all train pieces
        val_source = [j for j in val_jobs if j["split"] == "train"]
        candidates = {j["piece_id"] for j in train_pool}
    else:
        val_source = train_pool if eval_jobs is None else [j for j in eval_jobs if j["split"] == "train"]
        candidates = {j["piece_id"] for j in val_source}
    validation_pieces = _validation_pieces(train_pool, candidates, validation_fraction, seed)
    if val_jobs is not None:
        missing = sorted(validation_pieces - {j["piece_id"] for j in val_source})
        if missing:
            raise MusicNetError(f"the validation corpora lack validation pieces {missing} "
                                "(plan_validation_pieces names the pieces to render)")
    return {
        "train": [j for j in train_pool if j["piece_id"] not in validation_pieces],
        "validation": [j for j in val_source if j["piece_id"] in validation_pieces],
        "test": test,
    }


def plan_validation_pieces(data_dirs: Union[PathLike, Sequence[PathLike]], taxonomy: str = DEFAULT_TAXONOMY,
                           validation_fraction: float = 0.1, seed: int = 0, skip_bad: bool = False) -> List[str]:
    """The validation pieces :func:`build_dataset` chooses for these training corpora with ``validation_data_dirs``.

    Parameters
    ----------
    data_dirs : path or list of paths
        The training corpora, as given to :func:`build_dataset`.
    taxonomy, validation_fraction, seed, skip_bad :
        As for :func:`build_dataset`.

    Returns
    -------
    list of str
        Sorted MusicNet ids.
    """
    data_dirs = [data_dirs] if isinstance(data_dirs, (str, os.PathLike)) else list(data_dirs)
    train_pool = [j for j in _plan_corpora(data_dirs, get_taxonomy(taxonomy).name, skip_bad, [])
                  if j["split"] == "train"]
    return sorted(_validation_pieces(train_pool, {j["piece_id"] for j in train_pool}, validation_fraction, seed))


def _fingerprint(split: str, jobs: List[dict], params: dict) -> str:
    files = []
    for job in jobs:
        stats = [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in (job["audio_path"], job["labels_path"])]
        files.append([job["recording_id"], job["piece_id"], stats])
    payload = json.dumps({"code": CODE_VERSION, "split": split, "params": params, "files": files}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:40]


# -- row generation (runs in datasets' worker processes) ---------------------------------------------

def _recording_rows(job: dict, extractor, taxonomy, window_frames: int, hop_frames: int) -> List[dict]:
    audio, _ = load_audio(job["audio_path"], sr=extractor.sampling_rate)
    notes = read_labels(job["labels_path"])
    # label times count samples at 44.1 kHz, whatever rate the features are computed at
    late = np.flatnonzero(notes["start"] * extractor.sampling_rate >= len(audio) * MUSICNET_SR)
    if len(late):
        row = notes[late[0]]
        raise MusicNetError(
            f"{job['labels_path']}, row {row['line']}: note starts at sample {row['start']} (44.1 kHz), after the "
            f"end of the audio ({job['audio_path']} has {len(audio)} samples at {extractor.sampling_rate} Hz)"
        )
    real_frames = extractor.num_frames(len(audio))
    starts = window_starts(real_frames, window_frames, hop_frames)
    total = starts[-1] + window_frames
    padded = max(len(audio), (total - 1) * extractor.hop_length)  # samples giving >= total frames
    features = extractor.extract(np.pad(audio, (0, padded - len(audio))), normalize=False)
    activity = frame_activity(notes, total, taxonomy, extractor.hop_length, source=job["labels_path"],
                              sampling_rate=extractor.sampling_rate)
    activity[real_frames:] = 0  # padding is silence
    rows = []
    for start in starts:
        frames = activity[start : start + window_frames]
        rows.append({
            "input_features": features[start : start + window_frames],
            "labels": frames.max(axis=0).astype(np.float32),
            "frame_labels": frames,
            "recording_id": job["recording_id"],
            "piece_id": job["piece_id"],
            "start_frame": start,
        })
    return rows


def _generate_rows(jobs: List[dict], split: str, extractor_config: dict, taxonomy: str, window_frames: int,
                   hop_frames: int, skip_bad: bool, progress: bool, in_worker: bool) -> Iterator[dict]:

    if in_worker:
        # A forked worker inherits the parent's OpenMP pool in a broken state: torch would deadlock if the
        # parent had already run a parallel op. One thread per worker also avoids oversubscription.
        torch.set_num_threads(1)

    extractor = InstrumentFeatureExtractor(**extractor_config)
    taxonomy = get_taxonomy(taxonomy)
    for job in tqdm(jobs, desc=f"features ({split})", unit="rec", disable=not progress, leave=False):
        try:
            rows = _recording_rows(job, extractor, taxonomy, window_frames, hop_frames)
        except (MusicNetError, AudioError, UnknownInstrumentError) as exc:
            if not skip_bad:
                raise
            warnings.warn(f"skipping recording {job['recording_id']}: {exc}")
            continue
        yield from rows


def _features(window_frames: int, feature_size: int, num_labels: int):
    return Features({
        "input_features": Array2D((window_frames, feature_size), "float32"),
        "labels": FeatureList(Value("float32"), length=num_labels),
        "frame_labels": Array2D((window_frames, num_labels), "uint8"),
        "recording_id": Value("string"),
        "piece_id": Value("string"),
        "start_frame": Value("int32"),
    })


_INPUT_ERRORS = {cls.__name__: cls for cls in (MusicNetError, AudioError, UnknownInstrumentError)}


def _input_error(exc: BaseException) -> Optional[Exception]:
    """The bad-input error behind datasets' generic DatasetGenerationError, if that is what it wraps."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, tuple(_INPUT_ERRORS.values())):
        return cause
    # from a worker process only the remote traceback's text survives: recover the first error line
    match = re.search(r"^instrument_classifier\.[\w.]*\.(\w+): (.*)$", str(cause or ""), re.MULTILINE)
    if match and match.group(1) in _INPUT_ERRORS:
        return _INPUT_ERRORS[match.group(1)](match.group(2))
    return None


def _generate_split(split: str, jobs: List[dict], fingerprint: str, features, gen_kwargs: dict, num_proc: int,
                    cache_dir: Optional[str]):

    def empty():
        return Dataset.from_dict({name: [] for name in features}, features=features, split=split)

    if not jobs:  # e.g. no validation pieces: datasets cannot generate an empty split
        return empty()
    workers = min(num_proc, len(jobs))
    try:
        dataset = Dataset.from_generator(
            _generate_rows,
            features=features,
            gen_kwargs={"jobs": jobs, "split": split, "in_worker": workers > 1, **gen_kwargs},
            num_proc=workers if workers > 1 else None,
            fingerprint=fingerprint,
            cache_dir=cache_dir,
            split=split,
        )
    except DatasetGenerationError as exc:
        original = _input_error(exc)
        if original is not None:
            raise original from None  # the message that names the file, not datasets' generic one
        raise
    except ValueError as exc:
        if "corresponds to no data" in str(exc):  # every recording of the split skipped (skip_bad)
            return empty()
        raise
    # datasets notes how many rows each worker wrote ("shard_lengths" in dataset_info.json): the only byte of
    # the saved dataset that would depend on --num-proc. The rows and their order do not.
    for split_info in (dataset.info.splits or {}).values():
        split_info.shard_lengths = None
    return dataset


# -- output ----------------------------------------------------------------------------------------

#: what prepare writes in its output folder (DatasetDict.save_to_disk, the feature extractor, the info)
_OUTPUT_ENTRIES = {"dataset_dict.json", *SPLIT_NAMES, EXTRACTOR_DIR, INFO_FILE}


def _is_prepared(path: Path) -> bool:
    return (path / INFO_FILE).is_file() or (path / "dataset_dict.json").is_file()


def _check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output}: exists and is not a directory; choose another --output")
    if output.is_dir() and any(output.iterdir()) and not _is_prepared(output):
        raise FileExistsError(
            f"{output}: directory is not empty and is not a prepared dataset (no {INFO_FILE}); refusing to "
            "overwrite it. Choose another --output or remove it."
        )
    # replace only what prepare wrote: notes or runs kept beside a dataset would go with it
    foreign = sorted(p.name for p in output.iterdir() if p.name not in _OUTPUT_ENTRIES) if output.is_dir() else []
    if foreign:
        raise FileExistsError(
            f"{output}: holds a prepared dataset and also "
            f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}, "
            "which prepare did not write; refusing to replace the folder. Move them out, or choose another --output."
        )


def _temp_prefix(output: Path, kind: str) -> str:
    # host and pid in the name: a later run can tell the folders of a killed run from those of a live one
    return f".{output.name}.{kind}-{socket.gethostname()}-{os.getpid()}-"


def _remove_stale_temps(output: Path) -> None:
    """Delete the temporary folders next to ``output`` left by runs on this host that were killed.

    A run killed while writing (SIGKILL, out of memory, power loss) cannot clean up; its half-written
    copy can be as large as the dataset. The folder's process id tells whether its run is still alive.
    """
    if not output.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(output.name)}\.(?:tmp|old)-{re.escape(socket.gethostname())}-(\d+)-")
    for child in output.parent.iterdir():
        match = pattern.match(child.name)
        if match and child.is_dir() and not _process_alive(int(match.group(1))):
            shutil.rmtree(child, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _label_counts(dataset, labels: Sequence[str]) -> Dict[str, int]:
    counts = np.zeros(len(labels), dtype=np.int64)
    for batch in dataset.with_format("numpy", columns=["labels"]).iter(batch_size=1024):
        counts += (batch["labels"] > 0).sum(axis=0)
    return {label: int(c) for label, c in zip(labels, counts)}


def _fit_normalization(extractor, train) -> None:
    # The statistics of the training windows exactly as the model sees them (overlap and padding included).
    blocks = (b["input_features"] for b in train.with_format("numpy", columns=["input_features"]).iter(batch_size=256))
    extractor.fit_normalization(blocks)


# -- the builder -----------------------------------------------------------------------------------

def build_dataset(
    data_dirs: Union[PathLike, Sequence[PathLike]],
    output: PathLike,
    taxonomy: str = DEFAULT_TAXONOMY,
    window_frames: int = 256,
    hop_frames: int = 128,
    validation_fraction: float = 0.1,
    num_proc: int = 1,
    seed: int = 0,
    skip_bad: bool = False,
    eval_data_dirs: Optional[Union[PathLike, Sequence[PathLike]]] = None,
    validation_data_dirs: Optional[Union[PathLike, Sequence[PathLike]]] = None,
    feature_extractor=None,
    cache_dir: Optional[PathLike] = None,
    progress: bool = True,
    splits: Optional[Sequence[str]] = None,
):
    """Build (or reuse) the windowed dataset in ``output`` and return it as a ``DatasetDict``.

    Parameters
    ----------
    data_dirs : path or list of paths
        MusicNet-layout folders (several renderings of the same pieces allowed); recording ids are
        ``"<folder name>/<MusicNet id>"``.
    output : path
        Destination; replaced atomically. An existing non-empty folder that is not a prepared dataset is
        never overwritten (``FileExistsError``).
    taxonomy : {"seed12", "musicnet11"}
    window_frames, hop_frames : int
        Window length and train hop in feature frames (validation/test windows never overlap).
    validation_fraction : float
        Share of the train pieces moved to ``validation`` (by piece, stratified, deterministic by ``seed``).
    num_proc : int
        Worker processes for feature extraction (rows identical and in the same order for any value).
    skip_bad : bool
        Skip unusable recordings with a warning (listed in ``prepare_info.json["skipped"]``) instead of raising.
    eval_data_dirs : path or list of paths, optional
        Held-out corpora: validation windows (of the validation pieces) and test windows come from these.
    validation_data_dirs : path or list of paths, optional
        Corpora the validation windows come from instead (e.g. the held-out library's full renderings of the
        validation pieces); they must hold every piece :func:`plan_validation_pieces` names.
    feature_extractor : InstrumentFeatureExtractor, optional
        Feature settings (default MFCC-13); its normalisation is refitted on ``train``, the object is not changed.
    cache_dir : path, optional
        ``datasets`` cache for the generated splits (default: the ``datasets`` cache).
    splits : sequence of {"train", "validation", "test"}, optional
        Build only these (default all three), e.g. ``["test"]`` to evaluate saved models, which bring their
        own normalisation: then a folder with only ``test_data/`` and ``test_labels/`` will do. Validation
        needs the train recordings (its pieces are chosen among them); without ``train`` the saved feature
        extractor has no normalisation statistics.

    Returns
    -------
    datasets.DatasetDict
        ``train``, ``validation``, ``test`` (or the ``splits`` asked for), memory-mapped from ``output``.
    """

    output = Path(output)
    data_dirs = [data_dirs] if isinstance(data_dirs, (str, os.PathLike)) else list(data_dirs)
    if isinstance(eval_data_dirs, (str, os.PathLike)):
        eval_data_dirs = [eval_data_dirs]
    if isinstance(validation_data_dirs, (str, os.PathLike)):
        validation_data_dirs = [validation_data_dirs]
    taxonomy = get_taxonomy(taxonomy).name
    labels = list(get_taxonomy(taxonomy).labels)
    if window_frames < 1 or not 1 <= hop_frames <= window_frames:
        raise ValueError("need window_frames >= 1 and 1 <= hop_frames <= window_frames, "
                         f"got {window_frames}/{hop_frames}")
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    extractor = InstrumentFeatureExtractor() if feature_extractor is None else feature_extractor
    extractor = InstrumentFeatureExtractor.from_dict({**extractor.to_dict(), "mean": None, "std": None})
    _check_output(output)
    _remove_stale_temps(output)

    skipped: List[Tuple[str, str]] = []
    jobs = _plan_corpora(data_dirs, taxonomy, skip_bad, skipped)
    eval_jobs = None if not eval_data_dirs else _plan_corpora(eval_data_dirs, taxonomy, skip_bad, skipped)
    val_jobs = None if not validation_data_dirs else _plan_corpora(validation_data_dirs, taxonomy, skip_bad, skipped)
    wanted = ("train", "validation", "test") if splits is None else tuple(splits)
    unknown = sorted(set(wanted) - {"train", "validation", "test"})
    if unknown or not wanted:
        raise ValueError(f"splits must be some of train, validation, test; got {list(wanted)}")
    splits = _assign_splits(jobs, eval_jobs, validation_fraction, seed, val_jobs)
    if not splits["train"] and {"train", "validation"} & set(wanted):
        raise MusicNetError(f"no usable training recordings in {', '.join(map(str, data_dirs))}")
    splits = {split: split_jobs for split, split_jobs in splits.items() if split in wanted}

    extractor_config = {k: v for k, v in extractor.to_dict().items() if k not in ("mean", "std")}
    extractor_config.pop("feature_extractor_type", None)
    extractor_config.pop("processor_class", None)
    if extractor_config.get("level_dbfs") is None:  # no level normalisation: the rows (and the fingerprint) of an
        # extractor from before the setting existed
        extractor_config.pop("level_dbfs", None)
        extractor_config.pop("level_max_gain_db", None)
    gen_kwargs = {"extractor_config": extractor_config, "taxonomy": taxonomy, "window_frames": window_frames,
                  "skip_bad": skip_bad, "progress": progress}
    params = {k: v for k, v in gen_kwargs.items() if k != "progress"}
    fingerprints = {
        split: _fingerprint(split, split_jobs,
                            {**params, "hop_frames": hop_frames if split == "train" else window_frames})
        for split, split_jobs in splits.items()
    }
    fingerprint = hashlib.sha256(json.dumps(fingerprints, sort_keys=True).encode()).hexdigest()[:40]
    if _is_prepared(output) and read_info(output).get("fingerprint") == fingerprint:
        print(f"{output}: up to date (fingerprint {fingerprint}); reusing it", file=sys.stderr)
        return load_from_disk(str(output))

    features = _features(window_frames, extractor.feature_size, len(labels))
    dataset = DatasetDict({
        split: _generate_split(
            split, split_jobs, fingerprints[split], features,
            {**gen_kwargs, "hop_frames": hop_frames if split == "train" else window_frames},
            num_proc, None if cache_dir is None else str(cache_dir),
        )
        for split, split_jobs in splits.items()
    })
    if "train" in dataset:  # else (evaluation data) the models bring their own statistics
        _fit_normalization(extractor, dataset["train"])

    info = {
        "taxonomy": taxonomy,
        "labels": labels,
        "window_frames": window_frames,
        "hop_frames": hop_frames,
        "frame_rate": extractor.frame_rate,
        "feature_extractor": extractor.to_dict(),
        "splits": {},
        "skipped": [{"recording": name, "reason": reason} for name, reason in skipped],
        "data_dirs": [str(Path(d).resolve()) for d in data_dirs],
        "eval_data_dirs": [str(Path(d).resolve()) for d in eval_data_dirs or []],
        "validation_data_dirs": [str(Path(d).resolve()) for d in validation_data_dirs or []],
        "validation_fraction": validation_fraction,
        "seed": seed,
        "fingerprint": fingerprint,
        "split_fingerprints": fingerprints,
        "code_version": CODE_VERSION,
    }
    for split, ds in dataset.items():
        present = sorted(set(ds["recording_id"]))
        for job in splits[split]:  # failed while decoding in a worker (skip_bad): count it too
            if job["recording_id"] not in present:
                info["skipped"].append({"recording": job["recording_id"],
                                        "reason": "unusable audio or labels (see warnings)"})
        info["splits"][split] = {
            "recordings": len(present),
            "windows": ds.num_rows,
            "label_counts": _label_counts(ds, labels),
            "recording_ids": present,
            "pieces": sorted(set(ds["piece_id"])),
        }

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(output, "tmp"), dir=output.parent))
    try:
        # an empty split must still be written as one (empty) shard, or datasets cannot load it back
        dataset.save_to_disk(str(tmp), num_shards={s: 1 for s, d in dataset.items() if d.num_rows == 0} or None)
        extractor.save_pretrained(str(tmp / EXTRACTOR_DIR))
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")  # last: marks a complete dataset
        replace_dir(tmp, output, old_prefix=_temp_prefix(output, "old"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_from_disk(str(output))


def read_info(path: PathLike) -> dict:
    """``prepare_info.json`` of a prepared dataset folder; ``{}`` if it has none (or an unreadable one)."""
    try:
        return json.loads((Path(path) / INFO_FILE).read_text())
    except (OSError, ValueError):
        return {}


def load_prepared(path: PathLike):
    """``(DatasetDict, prepare_info dict, InstrumentFeatureExtractor with train mean/std)`` from ``prepare``'s
    output."""

    path = Path(path)
    if not (path / INFO_FILE).is_file():
        raise FileNotFoundError(
            f"{path}: not a prepared dataset (no {INFO_FILE}); build one with `instrument-classifier prepare`"
        )
    info = json.loads((path / INFO_FILE).read_text())
    extractor = InstrumentFeatureExtractor.from_pretrained(str(path / EXTRACTOR_DIR))
    return load_from_disk(str(path)), info, extractor


#: Shards of a pushed split are kept under this size (as ``Dataset.push_to_hub``'s default).
MAX_SHARD_BYTES = 500 * 2**20

MUSICNET_CITATION = """@inproceedings{thickstun2017learning,
  title     = {Learning Features of Music from Scratch},
  author    = {John Thickstun and Zaid Harchaoui and Sham M. Kakade},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2017},
  url       = {https://arxiv.org/abs/1611.09827}
}"""


def dataset_card(dataset, info: dict, repo_id: str) -> str:
    """The ``README.md`` of a pushed dataset: YAML front matter and text.

    Front matter: licence (CC BY 4.0, MusicNet's), ``task_categories``, tags, the label names in the order of the
    multi-hot ``labels`` / ``frame_labels`` vectors (``label_names``), the parquet files of each split
    (``configs``) and the features (``dataset_info``). Text: what a row is, where the audio came from (the sample
    libraries of a rendered corpus, held-out ones named apart), the splits, the attribution MusicNet's licence
    asks for and its citation.

    Parameters
    ----------
    dataset : datasets.DatasetDict
        The prepared splits.
    info : dict
        ``prepare_info.json``.
    repo_id : str
        The dataset repository, for the loading example.
    """

    labels = list(info["labels"])
    train, held_out = describe_corpus(info, "train"), describe_corpus(info, "evaluation")
    separate = bool(info.get("eval_data_dirs") or info.get("validation_data_dirs"))
    rendered = "rendered" in (train["kind"], held_out["kind"]) or "mixed" in (train["kind"], held_out["kind"])
    fe = info.get("feature_extractor") or {}
    windows = sum(ds.num_rows for ds in dataset.values())
    size = next(name for limit, name in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"),
                                         (1e6, "100K<n<1M"), (float("inf"), "n>1M")) if windows < limit)
    data = DatasetCardData(
        license="cc-by-4.0",
        task_categories=["audio-classification"],
        tags=["music", "instrument-recognition", "multi-label", "musicnet", "audio-features",
              fe.get("feature_type", "mfcc"), *(["synthetic-audio"] if rendered else [])],
        size_categories=[size],
        pretty_name=f"MusicNet instrument windows ({info['taxonomy']}, {fe.get('feature_type', 'mfcc')})",
        source_datasets=["MusicNet (Thickstun et al., 2017)"],
        label_names=labels,
        configs=[{"config_name": "default",
                  "data_files": [{"split": split, "path": f"data/{split}-*"} for split in dataset]}],
        dataset_info={"features": next(iter(dataset.values())).features._to_yaml_list(),
                      "splits": [{"name": split, "num_examples": ds.num_rows} for split, ds in dataset.items()]},
    )
    seconds = info["window_frames"] / info["frame_rate"]
    rows = ["| split | recordings | windows |", "| --- | ---: | ---: |"]
    rows += [f"| {split} | {stats['recordings']} | {stats['windows']} |" for split, stats in info["splits"].items()]
    label_rows = ["| index | label | train windows with it |", "| ---: | --- | ---: |"]
    counts = info["splits"].get("train", {}).get("label_counts", {})
    label_rows += [f"| {i} | {label} | {counts.get(label, '–')} |" for i, label in enumerate(labels)]
    audio = [f"- Training windows: {train['text']}."]
    if separate:
        audio.append(f"- Validation and test windows: {held_out['text']} (held out from training).")
    lines = [
        f"# {data.pretty_name}",
        "",
        f"Feature windows of MusicNet recordings for multi-label instrument recognition, made by "
        f"`instrument-classifier prepare`: each row is one window of {info['window_frames']} frames "
        f"({seconds:.2f} s) with its features, which instruments play in it, and which play in each frame. "
        "No audio is included.",
        "",
        "## Columns",
        "",
        f"- `input_features`: ({info['window_frames']}, {fe.get('feature_size', '?')}) float32, "
        f"{fe.get('feature_type', 'mfcc')} features (raw; the train mean/std are in "
        "`feature_extractor/preprocessor_config.json`).",
        f"- `labels`: {len(labels)} floats, multi-hot: `labels[i]` is 1 when the instrument `label_names[i]` "
        "plays in the window (the names, in order, are below, in this card's `label_names` and in "
        "`prepare_info.json`'s `labels`).",
        f"- `frame_labels`: ({info['window_frames']}, {len(labels)}) uint8, the same per frame.",
        "- `recording_id`, `piece_id`, `start_frame`: where the window comes from (splits are by piece).",
        "",
        "## Labels",
        "",
        f"Taxonomy `{info['taxonomy']}`:",
        "",
        *label_rows,
        "",
        "## Audio source",
        "",
        *audio,
        "",
        ("Synthesized audio: MusicNet's scores (note labels) played by sample libraries, not recordings of "
         "musicians; models trained on it hear real recordings worse." if rendered else
         "MusicNet's recordings of musicians (or audio in its layout)."),
        "",
        "## Splits",
        "",
        "`test` holds MusicNet's test pieces; `validation` is a share of its train pieces set aside before "
        f"training (validation fraction {info.get('validation_fraction')}, seed {info.get('seed')}); no piece is "
        "in two splits. Train windows overlap by half, validation and test windows do not.",
        "",
        *rows,
        "",
        "## Use",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'train = load_dataset("{repo_id}", split="train", streaming=True)',
        "```",
        "",
        f"or train on it: `instrument-classifier train --dataset_path {repo_id} --model_type cnn --output_dir run`.",
        "",
        "## Licence and attribution",
        "",
        "CC BY 4.0, as MusicNet's labels: derived from MusicNet by John Thickstun, Zaid Harchaoui and Sham M. "
        "Kakade (https://zenodo.org/records/5120004), licensed CC BY 4.0; the windows and features were computed "
        "by instrument-classifier. Cite MusicNet when you use it:",
        "",
        "```bibtex",
        MUSICNET_CITATION,
        "```",
        "",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)


def push_prepared(path: PathLike, repo_id: str, private: Optional[bool] = None, token: Optional[str] = None) -> str:
    """Upload a prepared dataset to the Hub in **one commit**: the splits as parquet shards
    (``data/{split}-NNNNN-of-NNNNN.parquet``), a dataset card (``README.md``, :func:`dataset_card`),
    ``prepare_info.json`` without local paths, and the feature extractor (``feature_extractor/``).

    Returns
    -------
    str
        The dataset's URL.
    """

    path = Path(path)
    dataset, info, _ = load_prepared(path)
    public_info = strip_local_paths(info)  # where the corpora were on this machine is nobody's business
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="push-dataset-") as staging:
        staging = Path(staging)
        (staging / "data").mkdir()
        for split, ds in dataset.items():
            shards = max(1, -(-ds.data.nbytes // MAX_SHARD_BYTES))
            for i in range(shards):
                ds.shard(shards, i, contiguous=True).to_parquet(
                    str(staging / "data" / f"{split}-{i:05d}-of-{shards:05d}.parquet"))
        (staging / "README.md").write_text(dataset_card(dataset, info, repo_id))  # reads render_info.json; no path
        (staging / INFO_FILE).write_text(json.dumps(public_info, indent=2) + "\n")
        shutil.copytree(path / EXTRACTOR_DIR, staging / EXTRACTOR_DIR)
        operations = [CommitOperationAdd(path_in_repo=f.relative_to(staging).as_posix(), path_or_fileobj=str(f))
                      for f in sorted(staging.rglob("*")) if f.is_file()]
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.create_commit(repo_id=repo_id, repo_type="dataset", operations=operations,
                          commit_message="instrument-classifier prepare: windows, card, info, feature extractor")
    return f"https://huggingface.co/datasets/{repo_id}"


# -- summary and CLI -------------------------------------------------------------------------------

def format_summary(info: dict) -> str:
    """Recordings, windows and per-class window counts per split, as a small table."""
    splits = [s for s in SPLIT_NAMES if s in info["splits"]]
    seconds = info["window_frames"] / info["frame_rate"]
    lines = [
        f"taxonomy {info['taxonomy']} ({len(info['labels'])} labels); windows of {info['window_frames']} frames "
        f"({seconds:.2f} s), train hop {info['hop_frames']}, validation/test hop {info['window_frames']}",
        f"{'':24}" + "".join(f"{s:>12}" for s in splits),
        f"{'recordings':24}" + "".join(f"{info['splits'][s]['recordings']:>12}" for s in splits),
        f"{'windows':24}" + "".join(f"{info['splits'][s]['windows']:>12}" for s in splits),
        "windows with label on:",
    ]
    for label in info["labels"]:
        lines.append(f"  {label:22}" + "".join(f"{info['splits'][s]['label_counts'][label]:>12}" for s in splits))
    if info.get("skipped"):
        lines.append(f"skipped {len(info['skipped'])} unusable recording(s): see prepare_info.json")
    return "\n".join(lines)
