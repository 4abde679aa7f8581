"""SoundFont reading and cross-library recording overlap, on small SF2/SF3 files written here (and FluidR3 if
present)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrument_classifier.data.soundfonts import (
    SoundFontError,
    overlap_report,
    read_soundfont,
    same_recording,
)

SR = 22050


def _chunk(cid: bytes, data: bytes, pad: bool = True) -> bytes:
    out = cid + struct.pack("<I", len(data)) + data
    return out + (b"\0" if pad and len(data) % 2 else b"")


def _list(kind: bytes, data: bytes, pad: bool = True) -> bytes:
    return _chunk(b"LIST", kind + data, pad)


def write_sf(path: Path, presets, samples, compressed: bool = False, pad: bool = True) -> Path:
    """A minimal SoundFont: ``presets`` = [(name, program, [(sample index, (key lo, hi), (vel lo, hi))])];
    ``samples`` = [(name, float audio, root key)]. One instrument per preset. SF3 stores Ogg Vorbis."""
    smpl, headers = b"", []
    for name, audio, root in samples:
        if compressed:
            buf = io.BytesIO()
            sf.write(buf, audio, SR, format="OGG", subtype="VORBIS")
            data = buf.getvalue()
            start = len(smpl)
            smpl += data
            headers.append((name, start, len(smpl), root, 0x11))
        else:
            pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
            start = len(smpl) // 2
            smpl += pcm + b"\0" * 92  # 46 zero samples after each sample, as the spec asks
            headers.append((name, start, start + len(audio), root, 1))
    phdr = pbag = pgen = inst = ibag = igen = b""
    n_pbag = n_pgen = n_ibag = n_igen = 0
    for i, (name, program, zones) in enumerate(presets):
        phdr += struct.pack("<20sHHHIII", name.encode(), program - 1, 0, n_pbag, 0, 0, 0)
        pbag += struct.pack("<HH", n_pgen, 0)
        n_pbag += 1
        pgen += struct.pack("<HH", 41, i)
        n_pgen += 1
        inst += struct.pack("<20sH", f"inst{i}".encode(), n_ibag)
        for sample, keys, vels in zones:
            ibag += struct.pack("<HH", n_igen, 0)
            n_ibag += 1
            igen += struct.pack("<HBB", 43, *keys) + struct.pack("<HBB", 44, *vels) + struct.pack("<HH", 53, sample)
            n_igen += 3
    phdr += struct.pack("<20sHHHIII", b"EOP", 0, 0, n_pbag, 0, 0, 0)
    pbag += struct.pack("<HH", n_pgen, 0)
    pgen += struct.pack("<HH", 0, 0)
    inst += struct.pack("<20sH", b"EOI", n_ibag)
    ibag += struct.pack("<HH", n_igen, 0)
    igen += struct.pack("<HH", 0, 0)
    shdr = b"".join(struct.pack("<20sIIIIIBbHH", n.encode(), s, e, s, e, SR, root, 0, 0, t)
                    for n, s, e, root, t in headers) + struct.pack("<20sIIIIIBbHH", b"EOS", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    pdta = b"".join(_chunk(c, d) for c, d in [(b"phdr", phdr), (b"pbag", pbag), (b"pmod", b"\0" * 10), (b"pgen", pgen),
                                              (b"inst", inst), (b"ibag", ibag), (b"imod", b"\0" * 10), (b"igen", igen),
                                              (b"shdr", shdr)])
    body = (b"sfbk" + _list(b"INFO", _chunk(b"ifil", struct.pack("<HH", 2, 1)))
            + _list(b"sdta", _chunk(b"smpl", smpl), pad) + _list(b"pdta", pdta))
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def tone(f0: float, seconds: float = 0.6, seed: int = 0, vibrato: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * f0 * t + vibrato * np.sin(2 * np.pi * 5.5 * t)
    amps = rng.uniform(0.2, 1.0, 6)
    y = sum(a * np.sin((k + 1) * phase + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(amps))
    y += 0.05 * rng.standard_normal(len(t))  # bow / breath noise: every recording its own
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture
def libraries(tmp_path):
    violin_a, violin_b, flute = tone(440, seed=1, vibrato=0.3), tone(440, seed=2, vibrato=1.0), tone(660, seed=3)
    # "a" and "copy" share the violin recording (re-encoded as Ogg, trimmed attack, quieter); "other" does not
    a = write_sf(tmp_path / "a.sf2", [("Violin A", 41, [(0, (0, 127), (0, 63)), (1, (0, 127), (64, 127))]),
                                      ("Flute A", 74, [(1, (0, 127), (0, 127))])],
                 [("vln", violin_a, 69), ("fl", flute, 76)])
    copy = write_sf(tmp_path / "copy.sf3", [("Violin C", 41, [(0, (0, 127), (0, 127))])],
                    [("vln copy", 0.5 * violin_a[300:], 69)], compressed=True, pad=False)
    other = write_sf(tmp_path / "other.sf2", [("Violin B", 41, [(0, (0, 127), (0, 127))])], [("vln b", violin_b, 69)])
    return a, copy, other


def test_reads_presets_zones_and_sample_audio(libraries):
    a, copy, _ = libraries
    font = read_soundfont(a)
    name, zones = font.preset(41)
    assert name == "Violin A"
    assert [(z.sample, z.key_range, z.vel_range) for z in zones] == [(0, (0, 127), (0, 63)), (1, (0, 127), (64, 127))]
    assert font.velocity_layers(41) == 2 and font.velocity_layers(74) == 1
    audio, rate = font.audio(0)
    assert rate == SR and np.allclose(audio, tone(440, seed=1, vibrato=0.3), atol=1e-4)
    with pytest.raises(KeyError):
        font.preset(1)
    # SF3: Ogg-compressed samples, odd-sized sdta without the RIFF pad byte
    font3 = read_soundfont(copy)
    audio3, _ = font3.audio(0)
    assert font3.samples[0].compressed and abs(len(audio3) - (len(audio) - 300)) < 1000


def test_same_recording_survives_reencoding_trim_and_gain_but_not_another_take(libraries):
    a, copy, other = libraries
    x = read_soundfont(a).audio(0)[0]
    assert same_recording(x, read_soundfont(copy).audio(0)[0]) > 0.9
    assert same_recording(x, read_soundfont(other).audio(0)[0]) < 0.8  # same pitch and instrument, other take


def test_overlap_report_finds_shared_recordings_only(libraries):
    a, copy, other = libraries
    report = overlap_report([a, copy, other], programs=(41, 74))
    assert report["matrix"][("copy", "a")] == 1.0
    assert report["matrix"][("a", "copy")] == 0.5  # a's flute is not in copy
    assert report["shared"][("copy", "a")] == {41: 1}
    assert report["matrix"][("other", "a")] == 0.0 and report["matrix"][("a", "other")] == 0.0
    assert report["libraries"]["a"][41] == {"preset": "Violin A", "samples": 2, "velocity_layers": 2}


def test_not_a_soundfont_names_the_file(tmp_path):
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(SoundFontError, match="bad.sf2"):
        read_soundfont(bad)


FLUIDR3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


@pytest.mark.skipif(not FLUIDR3.is_file(), reason="FluidR3 GM not installed")
def test_fluidr3_presets_of_musicnet_instruments():
    font = read_soundfont(FLUIDR3)
    assert font.preset(41)[0] == "Violin" and font.preset(1)[0] == "Yamaha Grand Piano"[: len(font.preset(1)[0])]
    audio, rate = font.audio(font.preset(41)[1][0].sample)
    assert rate == 44100 and 0.01 < np.max(np.abs(audio)) <= 1.0
