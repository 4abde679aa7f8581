"""Scaling out: what ``prepare --push-to-hub`` uploads streams back with ``datasets``.

The Hub is unreachable here, so ``HfApi`` is mocked at its boundary and every file the push uploads is
written into a local folder laid out as the dataset repo would be. ``load_dataset(that folder,
streaming=True)`` then resolves the repo exactly as it would resolve ``load_dataset("user/name",
streaming=True)`` (README.md ``configs`` and ``dataset_info``, ``data/*.parquet``): the rows come back
in order with their ``Array2D`` shapes, and ``split_dataset_by_node`` shares them between nodes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from badfiles import small_corpus
from instrument_classifier.data.prepare import build_dataset, load_prepared, push_prepared


def _write(dest: Path, content) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, (bytes, bytearray)):
        dest.write_bytes(content)
    elif isinstance(content, (str, Path)):
        shutil.copyfile(content, dest)
    else:  # a file object
        dest.write_bytes(content.read())


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """``(prepared folder, local mirror of the pushed dataset repo)``."""
    from huggingface_hub import CommitInfo, HfApi

    root = tmp_path_factory.mktemp("scale_out")
    build_dataset(small_corpus(root / "corpus"), root / "prepared", cache_dir=root / "cache", progress=False)
    repo = root / "repo"
    commit = CommitInfo(commit_url="https://huggingface.co/datasets/me/windows/commit/" + "0" * 40,
                        commit_message="m", commit_description="", oid="0" * 40)

    def create_commit(self, repo_id, operations, **kw):  # the one commit of the push: every file
        for op in operations:
            _write(repo / op.path_in_repo, op.path_or_fileobj)
        return commit

    with mock.patch.multiple(HfApi, create_repo=mock.DEFAULT, create_commit=create_commit):
        push_prepared(root / "prepared", "me/windows")
    return root / "prepared", repo


def test_pushed_layout_streams_back_row_for_row(pushed):
    from datasets import Array2D, IterableDatasetDict, load_dataset

    prepared, repo = pushed
    assert (repo / "README.md").is_file() and any(repo.glob("data/train-*.parquet"))
    streamed = load_dataset(str(repo), streaming=True)
    assert isinstance(streamed, IterableDatasetDict) and set(streamed) == {"train", "validation", "test"}
    local, info, _ = load_prepared(prepared)
    for split in local:
        features = streamed[split].features
        assert features is not None and features["input_features"] == Array2D((256, 13), "float32")
        rows = list(streamed[split])
        expected = local[split].with_format("numpy")[:]
        assert len(rows) == local[split].num_rows > 0
        np.testing.assert_array_equal(np.stack([np.asarray(r["input_features"], np.float32) for r in rows]),
                                      expected["input_features"])
        np.testing.assert_array_equal(np.stack([np.asarray(r["frame_labels"], np.uint8) for r in rows]),
                                      expected["frame_labels"])
        assert [r["recording_id"] for r in rows] == list(expected["recording_id"])
    # what training needs besides the rows travels with them
    assert (repo / "prepare_info.json").is_file()
    assert (repo / "feature_extractor" / "preprocessor_config.json").is_file()


def test_streamed_windows_split_between_nodes_without_overlap(pushed):
    from datasets import load_dataset
    from datasets.distributed import split_dataset_by_node

    _, repo = pushed
    train = load_dataset(str(repo), split="train", streaming=True)
    everything = [(r["recording_id"], r["start_frame"]) for r in train]
    parts = [[(r["recording_id"], r["start_frame"]) for r in split_dataset_by_node(train, rank, 2)] for rank in (0, 1)]
    assert parts[0] and parts[1]
    assert sorted(parts[0] + parts[1]) == sorted(everything)
    assert not set(parts[0]) & set(parts[1])
