"""Label taxonomies: map General MIDI programs (1-based, as in MusicNet) to class labels.

Two taxonomies ship:

``seed12`` (default)
    The 12 instrument families of the original study. Decisions where the study
    was unclear, deliberately made here and tested in ``tests/test_taxonomy.py``:

    * GM 53-55 (Choir Aahs, Voice Oohs, Synth Voice) and 122 (Breath Noise) are
      voices and noises, not instruments of any family. The study left them
      unmapped; they stay unmapped and raise :class:`UnknownInstrumentError`
      rather than being silently folded into a wrong family.
    * GM 101 was misspelled in the study's table; 97-104 (the "Synth Effects"
      block) all map to ``Synth``, as the study's ranges say.

``musicnet11``
    The 11 instruments that occur in MusicNet, one class each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Tuple

__all__ = [
    "Taxonomy",
    "UnknownInstrumentError",
    "TAXONOMIES",
    "DEFAULT_TAXONOMY",
    "get_taxonomy",
    "MUSICNET_PROGRAMS",
]


class UnknownInstrumentError(ValueError):
    """A General MIDI program that the chosen taxonomy does not map."""


#: The General MIDI programs (1-based) that occur in MusicNet, with their names.
MUSICNET_PROGRAMS: Dict[int, str] = {
    1: "Piano",
    7: "Harpsichord",
    41: "Violin",
    42: "Viola",
    43: "Cello",
    44: "Contrabass",
    61: "French Horn",
    69: "Oboe",
    71: "Bassoon",
    72: "Clarinet",
    74: "Flute",
}


@dataclass(frozen=True)
class Taxonomy:
    """A mapping from GM programs (1-based) to an ordered list of labels."""

    name: str
    labels: Tuple[str, ...]
    program_to_label: Mapping[int, str] = field(repr=False)
    description: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.program_to_label.values()) - set(self.labels)
        if unknown:
            raise ValueError(f"taxonomy {self.name!r} maps to undeclared labels {sorted(unknown)}")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def id2label(self) -> Dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> Dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def label_of(self, program: int) -> str:
        """Label for a 1-based GM program; raises :class:`UnknownInstrumentError`."""
        try:
            return self.program_to_label[int(program)]
        except (KeyError, ValueError, TypeError):
            raise UnknownInstrumentError(
                f"instrument program {program!r} is not mapped by taxonomy {self.name!r} "
                f"(mapped programs: {_ranges(sorted(self.program_to_label))})"
            ) from None

    def index_of(self, program: int) -> int:
        """Class index for a 1-based GM program; raises :class:`UnknownInstrumentError`."""
        return self.label2id[self.label_of(program)]

    def programs_of(self, label: str) -> Tuple[int, ...]:
        return tuple(p for p, lab in sorted(self.program_to_label.items()) if lab == label)


def _ranges(values) -> str:
    out, start, prev = [], None, None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = v
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(out)


def _span(first: int, last: int, label: str) -> Dict[int, str]:
    return {p: label for p in range(first, last + 1)}


_SEED12_LABELS = (
    "Keyboard",
    "Guitar",
    "Strings",
    "Percussion",
    "Organ",
    "Bass",
    "Brass",
    "Woodwind",
    "Flute",
    "Synth Lead/Pad",
    "Synth",
    "World Instrument",
)

_SEED12_MAP: Dict[int, str] = {}
for _first, _last, _label in [
    (1, 8, "Keyboard"),
    (9, 16, "Percussion"),
    (17, 21, "Organ"),
    (22, 24, "Woodwind"),  # accordion, harmonica, bandoneon: reed instruments
    (25, 32, "Guitar"),
    (33, 40, "Bass"),
    (41, 47, "Strings"),
    (48, 48, "Percussion"),  # timpani
    (49, 52, "Strings"),
    # 53-55 (voices) deliberately unmapped, see module docstring
    (56, 56, "Strings"),  # orchestra hit, as in the study
    (57, 64, "Brass"),
    (65, 72, "Woodwind"),
    (73, 80, "Flute"),
    (81, 96, "Synth Lead/Pad"),
    (97, 104, "Synth"),  # includes 101, misspelled in the study
    (105, 112, "World Instrument"),
    (113, 118, "Percussion"),
    (119, 119, "Synth"),
    (120, 120, "Percussion"),
    (121, 121, "Guitar"),  # guitar fret noise
    # 122 (breath noise) deliberately unmapped
    (123, 128, "Percussion"),
]:
    _SEED12_MAP.update(_span(_first, _last, _label))

SEED12 = Taxonomy(
    name="seed12",
    labels=_SEED12_LABELS,
    program_to_label=_SEED12_MAP,
    description="The 12 instrument families of the original study (GM program ranges).",
)

MUSICNET11 = Taxonomy(
    name="musicnet11",
    labels=tuple(MUSICNET_PROGRAMS.values()),
    program_to_label=dict(MUSICNET_PROGRAMS),
    description="The 11 instruments that occur in MusicNet, one class each.",
)

TAXONOMIES: Dict[str, Taxonomy] = {t.name: t for t in (SEED12, MUSICNET11)}
DEFAULT_TAXONOMY = "seed12"


def get_taxonomy(name: str = DEFAULT_TAXONOMY) -> Taxonomy:
    """Return the taxonomy called ``name`` (``seed12`` or ``musicnet11``)."""
    if isinstance(name, Taxonomy):
        return name
    try:
        return TAXONOMIES[name]
    except KeyError:
        raise ValueError(f"unknown taxonomy {name!r}; choose one of {sorted(TAXONOMIES)}") from None
