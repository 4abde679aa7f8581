"""Taxonomies: the seed12 General MIDI ranges of the study, the deliberate decisions, musicnet11."""

from __future__ import annotations

import pytest

from instrument_classifier.data.taxonomy import (
    DEFAULT_TAXONOMY,
    MUSICNET_PROGRAMS,
    TAXONOMIES,
    UnknownInstrumentError,
    get_taxonomy,
)

# Written out independently from the table in taxonomy.py's docstring / the study (1-based GM programs).
SEED12_RANGES = [
    (1, 8, "Keyboard"), (9, 16, "Percussion"), (17, 21, "Organ"), (22, 24, "Woodwind"), (25, 32, "Guitar"),
    (33, 40, "Bass"), (41, 47, "Strings"), (48, 48, "Percussion"), (49, 52, "Strings"), (56, 56, "Strings"),
    (57, 64, "Brass"), (65, 72, "Woodwind"), (73, 80, "Flute"), (81, 96, "Synth Lead/Pad"), (97, 104, "Synth"),
    (105, 112, "World Instrument"), (113, 118, "Percussion"), (119, 119, "Synth"), (120, 120, "Percussion"),
    (121, 121, "Guitar"), (123, 128, "Percussion"),
]
UNMAPPED = (53, 54, 55, 122)


def test_default_is_seed12_with_twelve_labels():
    tax = get_taxonomy()
    assert DEFAULT_TAXONOMY == "seed12" and tax.name == "seed12" and tax.num_labels == 12
    assert set(TAXONOMIES) == {"seed12", "musicnet11"}
    assert get_taxonomy(tax) is tax


@pytest.mark.parametrize("first, last, label", SEED12_RANGES)
def test_seed12_ranges(first, last, label):
    tax = get_taxonomy("seed12")
    for program in range(first, last + 1):
        assert tax.label_of(program) == label, program
        assert tax.index_of(program) == tax.labels.index(label)


def test_seed12_covers_every_program_but_voices_and_breath_noise():
    tax = get_taxonomy("seed12")
    mapped = {p for first, last, _ in SEED12_RANGES for p in range(first, last + 1)}
    assert mapped | set(UNMAPPED) == set(range(1, 129)) and not mapped & set(UNMAPPED)
    assert set(tax.program_to_label) == mapped
    assert {label for *_, label in SEED12_RANGES} == set(tax.labels)


@pytest.mark.parametrize("program", UNMAPPED)
def test_seed12_voices_and_breath_noise_raise(program):
    with pytest.raises(UnknownInstrumentError, match=f"program {program} is not mapped by taxonomy 'seed12'"):
        get_taxonomy("seed12").index_of(program)


def test_seed12_program_101_is_synth():
    tax = get_taxonomy("seed12")
    assert tax.label_of(101) == "Synth" and tax.programs_of("Synth") == tuple(range(97, 105)) + (119,)


def test_musicnet11_ids():
    tax = get_taxonomy("musicnet11")
    assert tax.labels == ("Piano", "Harpsichord", "Violin", "Viola", "Cello", "Contrabass", "French Horn", "Oboe",
                          "Bassoon", "Clarinet", "Flute")
    assert [tax.index_of(p) for p in MUSICNET_PROGRAMS] == list(range(11))
    assert tax.id2label[4] == "Cello" and tax.label2id["Flute"] == 10
    assert {i: lab for lab, i in tax.label2id.items()} == tax.id2label
    # every MusicNet instrument maps under seed12 too
    s12 = get_taxonomy("seed12")
    assert {p: s12.label_of(p) for p in MUSICNET_PROGRAMS} == {
        1: "Keyboard", 7: "Keyboard", 41: "Strings", 42: "Strings", 43: "Strings", 44: "Strings", 61: "Brass",
        69: "Woodwind", 71: "Woodwind", 72: "Woodwind", 74: "Flute"}


@pytest.mark.parametrize("name, program", [("musicnet11", 2), ("musicnet11", 53), ("seed12", 0), ("seed12", 129),
                                           ("seed12", "x"), ("musicnet11", None)])
def test_unknown_program_error_names_program_and_taxonomy(name, program):
    with pytest.raises(UnknownInstrumentError) as err:
        get_taxonomy(name).label_of(program)
    assert repr(program) in str(err.value) and name in str(err.value) and "mapped programs" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_unknown_taxonomy_name():
    with pytest.raises(ValueError, match="unknown taxonomy 'seed13'.*musicnet11.*seed12"):
        get_taxonomy("seed13")
