"""MusicNet reader: layouts, label parsing and validation, frame activity on hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from instrument_classifier.data.musicnet import (
    LABEL_COLUMNS,
    MusicNetError,
    find_musicnet_root,
    frame_activity,
    label_indices,
    list_recordings,
    read_labels,
)
from instrument_classifier.data.taxonomy import UnknownInstrumentError, get_taxonomy

HEADER = ",".join(LABEL_COLUMNS)
REAL_LABELS = Path(__file__).resolve().parents[2] / "shared" / "musicnet"  # ../shared beside the checkout
EXCERPTS = Path(__file__).resolve().parents[1] / "instrument_classifier" / "data" / "excerpts"


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def tiny_recordings():
    return {
        "7": {"split": "train", "notes": [(0, 22050, 41, 60)], "num_samples": 44100},
        "12": {"split": "train", "notes": [(0, 22050, 74, 72)], "num_samples": 44100},
        "30": {"split": "test", "notes": [(100, 30000, 1, 48)], "num_samples": 44100},
    }


# -- layouts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["original", "kaggle"])
def test_both_layouts_list_the_same_recordings(tmp_path, make_synthetic_musicnet, layout):
    root = make_synthetic_musicnet(tmp_path, layout=layout, recordings=tiny_recordings())
    found = find_musicnet_root(root)
    assert found == (tmp_path / "musicnet" / "musicnet" if layout == "kaggle" else tmp_path)
    recs = list_recordings(root)
    # sorted by split then numerically by id (7 before 12)
    assert [(r.split, r.id) for r in recs] == [("train", "7"), ("train", "12"), ("test", "30")]
    for r in recs:
        assert r.audio_path == found / f"{r.split}_data" / f"{r.id}.wav"
        assert r.labels_path == found / f"{r.split}_labels" / f"{r.id}.csv"
    assert [r.id for r in list_recordings(root, splits=("test",))] == ["30"]


def test_not_a_musicnet_folder_names_it(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(MusicNetError, match="not a MusicNet folder") as err:
        find_musicnet_root(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(MusicNetError, match="no such directory"):
        find_musicnet_root(tmp_path / "missing")


@pytest.mark.parametrize("remove, problem", [("labels", "audio without labels"), ("audio", "labels without audio")])
def test_unpaired_files_raise_or_are_skipped(tmp_path, make_synthetic_musicnet, remove, problem):
    root = make_synthetic_musicnet(tmp_path, recordings=tiny_recordings())
    if remove == "labels":
        (root / "train_labels" / "12.csv").unlink()
        named = root / "train_data" / "12.wav"
    else:
        (root / "train_data" / "12.wav").unlink()
        named = root / "train_labels" / "12.csv"
    with pytest.raises(MusicNetError, match=problem) as err:
        list_recordings(root)
    assert str(named) in str(err.value)

    skipped = []
    with pytest.warns(UserWarning, match=problem):
        recs = list_recordings(root, skip_bad=True, skipped=skipped)
    assert [r.id for r in recs] == ["7", "30"]
    assert len(skipped) == 1 and skipped[0][0] == str(named)


# -- labels ---------------------------------------------------------------------------------------

def test_read_labels_values_bom_extra_and_reordered_columns(tmp_path):
    path = write_csv(
        tmp_path / "a.csv",
        "\ufeffnote,extra,end_time,start_time,instrument,start_beat,end_beat,note_value\n"
        "60,x,1000,0,41,0.0,1.0,Quarter\n"
        "\n"  # blank lines are ignored
        "72,y,90000.0,44100,74,1.0,0.5,Eighth\n",
    )
    notes = read_labels(path)
    assert notes["start"].tolist() == [0, 44100]
    assert notes["end"].tolist() == [1000, 90000]
    assert notes["instrument"].tolist() == [41, 74]
    assert notes["note"].tolist() == [60, 72]
    assert notes["line"].tolist() == [2, 4]
    assert all(notes[f].dtype == np.int64 for f in ("start", "end", "instrument", "note"))
    # the score columns, verbatim and in note order, for the renderer that writes them back
    with_score, score = read_labels(path, with_score=True)
    np.testing.assert_array_equal(with_score, notes)
    assert score == [("0.0", "1.0", "Quarter"), ("1.0", "0.5", "Eighth")]


def test_header_only_csv_has_no_notes(tmp_path):
    notes = read_labels(write_csv(tmp_path / "empty.csv", HEADER + "\n"))
    assert len(notes) == 0 and "start" in notes.dtype.names
    assert frame_activity(notes, 10, "seed12").shape == (10, 12)
    assert frame_activity(notes, 10, "seed12").sum() == 0


GOOD = "0,1000,41,60,0.0,1.0,Quarter"


@pytest.mark.parametrize(
    "rows, row, message",
    [
        ([GOOD, "0,1000,0,60,0.0,1.0,Quarter"], 3, "instrument 0 is not a General MIDI program"),
        (["0,1000,129,60,0.0,1.0,Quarter"], 2, "instrument 129 is not a General MIDI program"),
        ([GOOD, GOOD, "5000,4000,41,60,0.0,1.0,Quarter"], 4, "end_time 4000 is before start_time 5000"),
        (["abc,1000,41,60,0.0,1.0,Quarter"], 2, "start_time is not a number: 'abc'"),
        ([GOOD, "0,1000,41,60,zero,1.0,Quarter"], 3, "start_beat is not a number"),
        (["0,nan,41,60,0.0,1.0,Quarter"], 2, "end_time is not finite"),
        (["0,1000,41.5,60,0.0,1.0,Quarter"], 2, "instrument must be a whole number"),
        (["-5,1000,41,60,0.0,1.0,Quarter"], 2, "negative start_time"),
        (["0,1000,41,60"], 2, "4 fields, the header has 7"),
        (["0,1000,41,200,0.0,1.0,Quarter"], 2, "note 200 is not a MIDI pitch"),
    ],
)
def test_bad_rows_name_file_and_row(tmp_path, rows, row, message):
    path = write_csv(tmp_path / "bad_labels.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(MusicNetError) as err:
        read_labels(path)
    text = str(err.value)
    assert str(path) in text and f"row {row}:" in text and message in text


@pytest.mark.parametrize("content", ["", "start_time,end_time,instrument,note\n0,1,41,60\n"])
def test_missing_columns_name_file(tmp_path, content):
    path = write_csv(tmp_path / "cols.csv", content)
    with pytest.raises(MusicNetError, match="missing column") as err:
        read_labels(path)
    assert str(path) in str(err.value) and "row 1" in str(err.value)


def test_unreadable_labels_name_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.encode() + b"\n0,1,41,60,0,1,Vi\xe9rtel\n")
    with pytest.raises(MusicNetError, match="not UTF-8") as err:
        read_labels(path)
    assert str(path) in str(err.value)
    with pytest.raises(MusicNetError, match="cannot read"):
        read_labels(tmp_path / "missing.csv")


def test_instrument_unknown_to_taxonomy_names_file_and_row(tmp_path):
    path = write_csv(tmp_path / "voices.csv", f"{HEADER}\n{GOOD}\n0,1000,54,60,0.0,1.0,Quarter\n")
    notes = read_labels(path)  # 54 (Voice Oohs) is a valid GM program...
    with pytest.raises(UnknownInstrumentError) as err:  # ...that seed12 leaves unmapped
        label_indices(notes, "seed12", str(path))
    assert str(path) in str(err.value) and "row 3" in str(err.value) and "54" in str(err.value)
    with pytest.raises(UnknownInstrumentError, match="row 3"):
        frame_activity(notes, 10, "seed12", source=str(path))
    assert label_indices(notes[:1], "musicnet11").tolist() == [get_taxonomy("musicnet11").index_of(41)]


# -- frame activity -------------------------------------------------------------------------------

def test_frame_activity_hand_computed_boundaries(tmp_path):
    hop = 512
    # Frame t covers samples [t*hop - 256, t*hop + 256).
    path = write_csv(
        tmp_path / "hand.csv",
        f"{HEADER}\n"
        # starts exactly where frame 3 ends, ends where frame 7 starts
        f"{3 * hop + 256},{6 * hop + 256},41,60,0,1,Q\n"
        f"{10 * hop},{10 * hop + 1},74,72,0,1,Q\n"  # one sample, centre of frame 10
        f"{12 * hop},{12 * hop},1,50,0,1,Q\n"  # zero length: sounds nowhere
        f"0,256,1,48,0,1,Q\n"  # frame 0 only ([-256, 256) is frame 0)
        f"{14 * hop + 255},{14 * hop + 257},72,50,0,1,Q\n"  # straddles the 14|15 boundary: both frames
        f"{18 * hop},{40 * hop},43,40,0,1,Q\n",  # runs past the last frame: clipped
    )
    notes = read_labels(path)
    tax = get_taxonomy("musicnet11")
    act = frame_activity(notes, 20, tax, hop_length=hop)
    assert act.dtype == np.uint8 and act.shape == (20, 11)
    on = {label: np.flatnonzero(act[:, tax.label2id[label]]).tolist() for label in tax.labels}
    assert on["Violin"] == [4, 5, 6]
    assert on["Flute"] == [10]
    assert on["Piano"] == [0]
    assert on["Clarinet"] == [14, 15]
    assert on["Cello"] == [18, 19]
    assert sum(len(v) for v in on.values()) == 3 + 1 + 1 + 2 + 2
    # seed12 folds Violin and Cello into Strings, Clarinet into Woodwind
    seed = frame_activity(notes, 20, "seed12", hop_length=hop)
    s12 = get_taxonomy("seed12")
    assert np.flatnonzero(seed[:, s12.label2id["Strings"]]).tolist() == [4, 5, 6, 18, 19]
    assert np.flatnonzero(seed[:, s12.label2id["Woodwind"]]).tolist() == [14, 15]


def test_frame_activity_matches_brute_force_on_real_labels():
    path = EXCERPTS / "train_labels" / "1727.csv"
    notes = read_labels(path)
    tax = get_taxonomy("musicnet11")
    hop, frames = 512, 400
    act = frame_activity(notes, frames, tax, hop_length=hop)
    idx = label_indices(notes, tax)
    centre = np.arange(frames) * hop
    ref = np.zeros_like(act)
    for (start, end), i in zip(notes[["start", "end"]].tolist(), idx):
        ref[:, i] |= ((start < centre + hop / 2) & (end > centre - hop / 2) & (end > start)).astype(np.uint8)
    np.testing.assert_array_equal(act, ref)
    assert act.sum() > 100


def test_shipped_excerpt_labels_all_parse():
    files = sorted(EXCERPTS.glob("*_labels/*.csv"))
    assert len(files) == 28
    for path in files:
        notes = read_labels(path)
        assert len(notes) > 0
        label_indices(notes, "musicnet11", str(path))
        label_indices(notes, "seed12", str(path))


def test_real_musicnet_label_files_parse():
    if not REAL_LABELS.is_dir():
        pytest.skip(f"{REAL_LABELS} (the real MusicNet label CSVs, ../shared/musicnet) not here")
    files = sorted(REAL_LABELS.glob("*_labels/*.csv"))[::10]  # a sample keeps this fast
    assert files, f"no MusicNet label CSVs in {REAL_LABELS}: the development data belongs in ../shared/musicnet"
    for path in files:
        notes = read_labels(path)
        rows = sum(1 for line in path.read_text().splitlines()[1:] if line.strip())
        assert len(notes) == rows
        assert set(notes["instrument"].tolist()) <= {1, 7, 41, 42, 43, 44, 61, 69, 71, 72, 74}
        assert (notes["end"] >= notes["start"]).all()
