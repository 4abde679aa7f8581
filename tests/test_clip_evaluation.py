"""`evaluate --clips`: models on labelled recordings, clip level (manifest checks, metrics, report files)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrument_classifier.cli import main
from instrument_classifier.evaluation.clips import (
    ManifestError,
    clip_set_metrics,
    evaluate_clips,
    read_manifest,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "space" / "examples"
DEFAULT = REPO / "instrument_classifier" / "pretrained" / "ensemble"
CNN = REPO / "instrument_classifier" / "pretrained" / "cnn"
REAL_DEV = REPO.parent / "shared" / "real-dev"  # ../shared beside the checkout
LABELS = ["Piano", "Harpsichord", "Violin", "Viola", "Cello", "Contrabass", "French Horn", "Oboe", "Bassoon",
          "Clarinet", "Flute"]


def write_manifest(path: Path, rows, header=("file", "instruments", "other_sounds")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two folders of real audio files: the Space's four example excerpts (rendered MusicNet pieces, labelled
    with the instruments of their scores), and a noise clip with none of the labels."""
    root = tmp_path_factory.mktemp("clips")
    rows = []
    (root / "examples").mkdir()
    with open(EXAMPLES / "examples.csv", newline="") as f:
        for example in csv.DictReader(f):
            shutil.copy(EXAMPLES / example["file"], root / "examples")
            rows.append([f"examples/{example['file']}", ";".join(s.strip() for s in example["instruments"].split(",")),
                         ""])
    (root / "other").mkdir()
    noise = 0.05 * np.random.default_rng(0).standard_normal(44100 * 4).astype(np.float32)
    sf.write(root / "other" / "noise.wav", noise, 44100)
    rows.append(["other/noise.wav", "", "white noise"])
    return write_manifest(root / "manifest.csv", rows)


# -- the manifest ----------------------------------------------------------------------------------

def test_manifest_rows_paths_and_labels(clips):
    rows = read_manifest(clips, LABELS)
    assert [r.row for r in rows] == [2, 3, 4, 5, 6]
    assert rows[0].file == clips.parent / "examples" / "beethoven_violin_sonata_10.ogg"
    assert rows[0].instruments == ["Piano", "Violin"] and rows[0].folder == "examples"
    assert rows[1].instruments == ["French Horn", "Bassoon", "Clarinet"]  # in label order
    assert rows[4].instruments == [] and rows[4].other_sounds == "white noise" and rows[4].folder == "other"


def test_manifest_folders_of_absolute_paths(tmp_path):
    """An absolute path below the manifest's folder groups like a relative one; one elsewhere by its parent."""
    inside, outside = tmp_path / "sets" / "solos", tmp_path / "elsewhere" / "mixes"
    for folder in (inside, outside):
        folder.mkdir(parents=True)
        sf.write(folder / "a.wav", np.zeros(4410, dtype=np.float32), 44100)
    manifest = write_manifest(tmp_path / "sets" / "m.csv", [[str(inside / "a.wav"), "Violin", ""],
                                                           [str(outside / "a.wav"), "", ""]])
    rows = read_manifest(manifest, LABELS)
    assert [r.folder for r in rows] == ["solos", str(outside)]

    # relative paths that climb out of the manifest's folder group by their folder, not all under ".."
    (tmp_path / "elsewhere" / "solos").mkdir()
    sf.write(tmp_path / "elsewhere" / "solos" / "b.wav", np.zeros(4410, dtype=np.float32), 44100)
    manifest = write_manifest(tmp_path / "sets" / "m.csv", [["../elsewhere/mixes/a.wav", "", ""],
                                                           ["../elsewhere/solos/b.wav", "Violin", ""],
                                                           ["solos/../solos/a.wav", "Violin", ""]])
    rows = read_manifest(manifest, LABELS)
    assert [r.folder for r in rows] == ["../elsewhere/mixes", "../elsewhere/solos", "solos"]


def test_manifest_label_names_ignore_case_and_spaces(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(4410, dtype=np.float32), 44100)
    manifest = write_manifest(tmp_path / "m.csv", [["a.wav", " violin ; FRENCH HORN", ""]],
                              header=("file", "instruments", "other_sounds"))
    assert read_manifest(manifest, LABELS)[0].instruments == ["Violin", "French Horn"]


@pytest.mark.parametrize("row, reason", [
    (["missing.wav", "Violin", ""], "audio file .*missing.wav not found"),
    (["a.wav", "Violin;Trumpet", ""], "unknown instrument 'Trumpet'"),
    (["a.wav"], "1 field, the header has 3"),
    (["a.wav", "Violin", "", "x"], "4 fields, the header has 3"),
    (["", "Violin", ""], "no file"),
    (["sub", "Violin", ""], ".*sub is a directory, not an audio file"),
    (["./a.wav", "Violin", ""], ".*a.wav is listed already, on row 2"),  # it would count twice
])
def test_a_bad_row_names_the_manifest_and_row_and_skip_bad_counts_it(tmp_path, row, reason):
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, np.zeros(4410, dtype=np.float32), 44100)
    (tmp_path / "sub").mkdir()
    manifest = write_manifest(tmp_path / "m.csv", [["a.wav", "Cello", ""], row, ["b.wav", "", "voice"]])
    with pytest.raises(ManifestError, match=rf"m\.csv row 3: {reason}"):
        read_manifest(manifest, LABELS)
    skipped = []
    rows = read_manifest(manifest, LABELS, skip_bad=True, skipped=skipped)
    assert [r.row for r in rows] == [2, 4]
    assert len(skipped) == 1 and skipped[0]["row"] == 3 and skipped[0]["reason"]


def test_a_row_may_leave_out_the_optional_trailing_fields(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(4410, dtype=np.float32), 44100)
    manifest = tmp_path / "m.csv"
    sf.write(tmp_path / "b.wav", np.zeros(4410, dtype=np.float32), 44100)
    manifest.write_text("file,instruments,other_sounds,source\na.wav,Violin\nb.wav,,voice\n")
    rows = read_manifest(manifest, LABELS)
    assert [(r.instruments, r.other_sounds) for r in rows] == [(["Violin"], ""), ([], "voice")]


@pytest.mark.parametrize("name, hint", [
    ("Cello, Viola", "separate instruments with ';'"),
    ("Double Bass", "'Double Bass' is 'Contrabass' here"),
    ("horn", "'horn' is 'French Horn' here"),
    ("Trumpet", "a sound none of the labels names goes in the other_sounds column"),
])
def test_an_unknown_instrument_says_what_to_write_instead(tmp_path, name, hint):
    sf.write(tmp_path / "a.wav", np.zeros(4410, dtype=np.float32), 44100)
    manifest = write_manifest(tmp_path / "m.csv", [["a.wav", name, ""]])
    with pytest.raises(ManifestError, match=re.escape(hint)):
        read_manifest(manifest, LABELS)


def test_manifest_without_columns_or_rows_or_with_a_broken_quote(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv", LABELS)
    with pytest.raises(ManifestError, match="no instruments column"):
        read_manifest(write_manifest(tmp_path / "a.csv", [["x.wav"]], header=("file",)), LABELS)
    with pytest.raises(ManifestError, match="no usable rows"):
        read_manifest(write_manifest(tmp_path / "b.csv", []), LABELS)
    broken = tmp_path / "c.csv"
    broken.write_text('file,instruments\n"a.wav,Violin\n' + "x" * (200 * 1024) + "\n")
    with pytest.raises(ManifestError, match=r"c\.csv row \d+: malformed CSV"):
        read_manifest(broken, LABELS)


# -- the metrics -----------------------------------------------------------------------------------

def test_clip_set_metrics_by_hand():
    labels = ["A", "B", "C"]
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    d = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]])
    s = np.array([[.9, .1, .8], [.8, .3, .2], [.1, .2, .7], [.2, .9, .1]])
    m = clip_set_metrics(y, s, d, labels)
    assert m["num_clips"] == 4
    assert m["false_alarms_per_clip"] == pytest.approx(2 / 4)  # C twice
    assert m["misses_per_clip"] == pytest.approx(1 / 4)  # B of clip 2
    assert m["exact_set_accuracy"] == pytest.approx(1 / 4)  # only clip 4
    assert m["clips_with_false_alarm"] == 2
    # micro: TP 3 (A, A, B), FP 2, FN 1
    assert m["precision_micro"] == pytest.approx(3 / 5) and m["recall_micro"] == pytest.approx(3 / 4)
    assert m["per_class"]["A"]["roc_auc"] == pytest.approx(1.0)
    assert m["per_class"]["B"]["roc_auc"] == pytest.approx(1.0)  # .3, .9 above .1, .2
    assert m["per_class"]["C"]["roc_auc"] is None and m["skipped_classes"] == ["C"]
    assert m["roc_auc_macro"] == pytest.approx(1.0)


# -- end to end ------------------------------------------------------------------------------------

def test_evaluate_clips_cli_agrees_with_predict(clips, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(CNN), "--clips", str(clips), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5 clips" in printed and "examples/" in printed and "none of the labels" in printed
    assert sorted(p.name for p in out.iterdir()) == ["clips.csv", "metrics.json", "metrics.md"]
    results = json.loads((out / "metrics.json").read_text())
    entry = results["cnn"]
    assert results["num_clips"] == 5 and results["labels"] == LABELS
    assert set(entry["by_folder"]) == {"examples", "other"} and entry["by_folder"]["examples"]["num_clips"] == 4
    assert entry["no_instrument"]["num_clips"] == 1

    # every clip's decisions and scores are what `predict` reports for the file
    with open(out / "clips.csv", newline="") as f:
        table = list(csv.DictReader(f))
    files = [str(clips.parent / row["file"]) for row in table]
    predicted = tmp_path / "predict.json"
    assert main(["predict", "--model", str(CNN), "--format", "json", "--output", str(predicted), *files]) == 0
    for row, result in zip(table, json.loads(predicted.read_text())):
        clip_scores = result["clip"]
        for label in LABELS:
            assert float(row[f"cnn:{label}"]) == pytest.approx(clip_scores[label], abs=1e-4)
        detected = [label for label, t in zip(LABELS, entry["thresholds"]) if clip_scores[label] >= t]
        assert (row["cnn:detected"].split(";") if row["cnn:detected"] else []) == detected

    # the summary follows from the per-clip table
    truth = np.array([[label in row["instruments"].split(";") for label in LABELS] for row in table])
    decided = np.array([[label in row["cnn:detected"].split(";") for label in LABELS] for row in table])
    assert entry["clips"]["false_alarms_per_clip"] == pytest.approx((decided & ~truth).sum() / 5)
    assert entry["clips"]["exact_set_accuracy"] == pytest.approx((decided == truth).all(axis=1).mean())
    assert "| cnn | all clips | 5 |" in (out / "metrics.md").read_text()
    # the clips with none of the labels: no F1, precision or recall to speak of, only false alarms and exact sets
    none_row = next(line for line in (out / "metrics.md").read_text().splitlines() if "none of the labels" in line)
    cells = [c.strip() for c in none_row.strip("|").split("|")]
    assert cells[2:] == ["1", "–", "–", "–", "–", "–", f"{entry['no_instrument']['false_alarms_per_clip']:.2f}",
                         "–", f"{entry['no_instrument']['exact_set_accuracy']:.3f}"]


def test_evaluate_clips_without_a_model_measures_the_default(clips, tmp_path, capsys):
    from instrument_classifier.inference import DEFAULT_MODEL_DIR

    out = tmp_path / "report"
    assert main(["evaluate", "--clips", str(clips), "--output", str(out)]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert DEFAULT_MODEL_DIR.name in results and results["num_clips"] == 5
    assert DEFAULT_MODEL_DIR.name in capsys.readouterr().out


def test_tuned_thresholds_print_their_cross_validated_figures(clips, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(CNN), "--clips", str(clips), "--output", str(out),
                 "--tune-thresholds"]) == 0
    printed = capsys.readouterr().out
    cv = json.loads((out / "metrics.json").read_text())["cnn"]["tuned_cross_validated"]
    line = (f"cnn: micro F1 {cv['f1_micro']:.3f}, false alarms/clip {cv['false_alarms_per_clip']:.2f}, "
            f"misses/clip {cv['misses_per_clip']:.2f}")
    assert f"judged on the other half (2-fold, {cv['repeats']} repeats" in printed and line in printed
    assert f"- {line}" in (out / "metrics.md").read_text()
    main(["evaluate", "--model", str(CNN), "--clips", str(clips), "--output", str(tmp_path / "plain")])
    assert "judged on the other half" not in capsys.readouterr().out


def test_tuning_on_too_few_clips_keeps_the_models_thresholds_and_says_so(clips, tmp_path, capsys):
    """No label has 5 clips here: `--tune-thresholds` leaves every threshold as predict has it (the recipes, which
    tune heads whose own thresholds come from synthetic windows, ask for 0.8 instead), and says what it tuned."""
    from instrument_classifier.inference import load_model

    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(CNN), "--clips", str(clips), "--output", str(out),
                 "--tune-thresholds"]) == 0
    results = json.loads((out / "metrics.json").read_text())
    own = load_model(str(CNN), device="cpu")[0].config.thresholds
    assert results["cnn"]["tuned_thresholds"] == {label: round(t, 4) for label, t in zip(LABELS, own)}
    assert results["tuning"] == {"min_clips": 5, "tuned_labels": [], "others_keep": "the model's thresholds"}
    assert "at least 5 clips here (none of them; the others keep the model's thresholds)" in capsys.readouterr().out
    recipe = evaluate_clips(str(CNN), clips, tune=True, untuned=0.8, progress=False)
    assert set(recipe["cnn"]["tuned_thresholds"].values()) == {0.8} and recipe["tuning"]["others_keep"] == 0.8


def test_a_model_named_like_a_report_key_gets_a_name_of_its_own(clips, tmp_path):
    folder = tmp_path / "tuning"
    shutil.copytree(CNN, folder)
    results = evaluate_clips(str(folder), clips, tune=True, progress=False)
    assert "tuning-2" in results and results["tuning"]["tuned_labels"] == []


def test_two_models_fixed_threshold_and_context(clips, tmp_path):
    results = evaluate_clips([str(DEFAULT), str(CNN)], clips, thresholds=0.5, context=True, progress=False)
    assert set(results) >= {"ensemble", "cnn"} and results["context"] is True
    for name in ("ensemble", "cnn"):
        assert results[name]["thresholds"] == [0.5] * len(LABELS)


def test_unreadable_audio_stops_or_is_skipped_and_nothing_is_half_written(clips, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(clips.parent, root)
    (root / "other" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    with open(root / "manifest.csv", "a", newline="") as f:
        csv.writer(f).writerow(["other/broken.wav", "Cello", ""])
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(CNN), "--clips", str(root / "manifest.csv"), "--output", str(out)]) == 2
    assert "manifest.csv row 7" in capsys.readouterr().err and not out.exists()
    (root / "other" / "empty.wav").write_bytes(b"")
    with open(root / "manifest.csv", "a", newline="") as f:
        csv.writer(f).writerow(["other/empty.wav", "Cello", ""])
    with pytest.raises(ManifestError) as error:  # every unreadable file at once, before any model runs
        read_manifest(root / "manifest.csv", LABELS)
    assert "row 7:" in str(error.value) and "not a readable audio file" in str(error.value)
    assert "row 8:" in str(error.value) and "empty file (0 bytes)" in str(error.value)
    (root / "manifest.csv").write_text("\n".join((root / "manifest.csv").read_text().splitlines()[:-1]) + "\n")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []
    assert main(["evaluate", "--model", str(CNN), "--clips", str(root / "manifest.csv"), "--output", str(out),
                 "--skip-bad"]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert results["num_clips"] == 5 and [s["row"] for s in results["skipped_rows"]] == [7]
    assert "skipped row 7" in capsys.readouterr().err


def test_a_folder_that_is_not_a_clip_report_is_never_replaced(clips, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "NOTES.txt").write_text("keep me")
    assert main(["evaluate", "--model", str(CNN), "--clips", str(clips), "--output", str(out)]) == 2
    assert "refusing to replace" in capsys.readouterr().err and (out / "NOTES.txt").read_text() == "keep me"


def test_context_and_skip_bad_need_clips(capsys):
    assert main(["evaluate", "--model", str(CNN), "--dataset", "x", "--output", "y", "--skip-bad"]) == 2
    assert "go with --clips" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--split", "train"], ["--cache-dir", "c"]])
def test_split_and_cache_dir_are_not_taken_silently_with_clips(clips, tmp_path, option, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(CNN), "--clips", str(clips), "--output", str(out), *option]) == 2
    assert "--split and --cache-dir go with --dataset or --data-dir" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(not (REAL_DEV / "manifest.csv").is_file(), reason="../shared/real-dev (real recordings) not here")
def test_real_recordings_from_the_development_set(tmp_path):
    """A few real clips per folder of ../shared/real-dev (read in place), through the bundled default."""
    with open(REAL_DEV / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    picked, per_folder = [], {}
    for row in rows:
        folder = row["file"].split("/")[0]
        if per_folder.get(folder, 0) < 3:
            per_folder[folder] = per_folder.get(folder, 0) + 1
            picked.append([str(REAL_DEV / row["file"]), row["instruments"], row["other_sounds"]])
    manifest = write_manifest(tmp_path / "real.csv", picked)
    results = evaluate_clips(str(DEFAULT), manifest, progress=False)
    assert results["num_clips"] == len(picked) >= 6
    m = results["ensemble"]["clips"]
    assert 0.0 <= m["false_alarms_per_clip"] <= len(LABELS) and m["num_clips"] == len(picked)
    assert sum(v["num_clips"] for v in results["ensemble"]["by_folder"].values()) == len(picked)


def test_clip_thresholds_are_tuned_only_for_labels_with_enough_clips_and_cross_validated():
    from instrument_classifier.evaluation.clips import cross_validated_tuning, tune_clip_thresholds

    rng = np.random.default_rng(0)
    y = np.zeros((60, 3), dtype=int)
    y[:30, 0] = 1  # 30 clips: tuned
    y[:3, 1] = 1  # 3 clips: too few, keeps the untuned threshold
    scores = rng.normal(0.3, 0.1, size=y.shape) + 0.4 * y
    scores[30:, 0] -= 0.1  # label 0 separates at about 0.55, far from the untuned 0.8
    scores = np.clip(scores, 0, 1)
    t = tune_clip_thresholds(y, scores, min_clips=5, untuned=0.8)
    assert t[1] == 0.8 and t[2] == 0.8
    assert 0.35 < t[0] < 0.7
    cv = cross_validated_tuning(y, scores, repeats=3)
    assert cv["repeats"] == 3 and 0.5 < cv["f1_micro"] <= 1.0 and cv["false_alarms_per_clip"] < 0.5
    # per label (a model's own thresholds): the others keep theirs, the tuned label's cut does not move
    own = tune_clip_thresholds(y, scores, min_clips=5, untuned=[0.1, 0.45, 0.6])
    assert own[1] == 0.45 and own[2] == 0.6 and own[0] == t[0]


def test_cross_validated_tuning_judges_a_subset_with_thresholds_tuned_on_all_clips():
    from instrument_classifier.evaluation.clips import cross_validated_tuning

    rng = np.random.default_rng(1)
    y = np.zeros((80, 2), dtype=int)
    y[::2, 0] = 1
    y[1::4, 1] = 1
    scores = np.clip(rng.normal(0.3, 0.1, size=y.shape) + 0.4 * y, 0, 1)
    hard = np.zeros(80, dtype=bool)
    hard[60:] = True
    scores[hard] = rng.uniform(0, 1, size=(20, 2))  # the last 20 clips are noise: the judged easy ones do better
    everything = cross_validated_tuning(y, scores, repeats=4, seed=3)
    easy = cross_validated_tuning(y, scores, repeats=4, seed=3, judged=~hard)
    noisy = cross_validated_tuning(y, scores, repeats=4, seed=3, judged=hard)
    assert noisy["f1_micro"] < everything["f1_micro"] < easy["f1_micro"]
    assert cross_validated_tuning(y, scores, repeats=4, seed=3, judged=np.ones(80, bool)) == everything
    with pytest.raises(ValueError, match="judged must mark"):
        cross_validated_tuning(y, scores, judged=np.zeros(80, bool))


def test_every_bad_row_is_reported_at_once_and_a_runaway_quote_by_where_it_opens(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(4410, dtype=np.float32), 44100)
    manifest = write_manifest(tmp_path / "m.csv", [["a.wav", "Cello", ""], ["missing.wav", "Violin", ""],
                                                   ["a.wav", "Trumpet", ""], ["a.wav"]])
    with pytest.raises(ManifestError) as error:
        read_manifest(manifest, LABELS)
    message = str(error.value)
    assert message.startswith(f"{manifest}: 3 bad rows (--skip-bad skips them):")
    assert "row 3: audio file" in message and "row 4: unknown instrument 'Trumpet'" in message
    assert "row 5: 1 field, the header has 3" in message
    runaway = tmp_path / "q.csv"
    sf.write(tmp_path / "b.wav", np.zeros(4410, dtype=np.float32), 44100)
    runaway.write_text('file,instruments,other_sounds\na.wav,Cello,\n"a.wav,Violin,\na.wav,,voice\na.wav",Cello,\n'
                       'b.wav,Violin,\n')
    with pytest.raises(ManifestError, match=r"q\.csv row 3: a double quote opened on row 3 runs to row 5"):
        read_manifest(runaway, LABELS)
    skipped = []
    assert [r.row for r in read_manifest(runaway, LABELS, skip_bad=True, skipped=skipped)] == [2, 6]
    assert [s["row"] for s in skipped] == [3]
