"""Train-time augmentation of normalised feature windows, on the training device.

Applied by :class:`~instrument_classifier.training.trainer.InstrumentTrainer` to training batches only (the
model is in train mode), after the collator has normalised them; random numbers come from torch's global
generator, which the Trainer seeds and restores on resume, so runs are reproducible.

* **SpecAugment-style masks** (Park et al., 2019): a few random spans of frames and of coefficients are set
  to 0, the normalised mean. The window labels are unchanged: a masked span is at most a small part of a
  3-s window, and instruments rarely play for less than that.
* **Gain**: a level change of ``g`` dB shifts every mel band's dB value by ``g`` (the ``top_db`` floor moves
  with the loudest bin), so it adds ``g * sqrt(n_mels)`` to MFCC ``c0`` (orthonormal DCT) and ``g`` to each
  log-mel (or constant-Q) band; deltas are unchanged. Exactly a gain on the audio, at the cost of an addition.
* **Equalisation**: a smooth random EQ curve over the mel axis, ``g(m) = sum_k a_k cos(pi k (m + 1/2) / n_mels)``
  for ``k = 1..bands``, adds ``a_k * sqrt(n_mels / 2)`` to MFCC ``c_k`` (the curve's own orthonormal DCT) and
  ``g(m)`` to each log-mel band; deltas are unchanged. Sample libraries and microphones differ by such
  spectral envelopes, so a fresh curve per window asks the model for cues that survive them. Exact for EQs
  smooth at the scale of a mel band, up to the ``top_db`` floor.
* **Frequency warp** (vocal tract length perturbation, Jaitly & Hinton, 2013): the spectral envelope is
  stretched along frequency, ``S'(f) = S(f / alpha)``, with ``alpha`` drawn per window. Two recordings of one
  instrument differ by the size and resonances of the instrument body as much as by the microphone, and a
  stretch moves those resonances (formants) where an EQ cannot. For log-mel features it is an interpolation
  along the band axis (log-frequency for constant-Q bands); for MFCCs the same interpolation between an
  inverse and a forward DCT, which is exact for the envelope the kept coefficients describe. Deltas are warped
  alike (the map is linear and acts per frame). The warp is applied first: it belongs to the sound, the masks,
  gain and EQ to its recording.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Optional, Tuple

import numpy as np
import torch
from transformers.audio_utils import hertz_to_mel

from ..modeling.feature_extraction_instrument import dct_matrix

__all__ = ["FeatureAugmentation"]


def _is_normalised(feature_extractor) -> bool:
    """Whether the collator standardises the features (with the extractor's fitted mean and std)."""
    return feature_extractor.mean is not None and getattr(feature_extractor, "do_normalize", True)


def _normalised(change: torch.Tensor, feature_extractor) -> torch.Tensor:
    """A change of the raw features (last axis) as a change of the features the collator normalised."""
    if _is_normalised(feature_extractor):
        return change / torch.tensor(feature_extractor.std, dtype=torch.float32)
    return change


@dataclass
class FeatureAugmentation:
    """Random masks and gain for a batch of normalised windows ``(batch, time, features)``.

    Parameters
    ----------
    time_masks, time_mask_frames : int
        Number of time masks per window and their maximum width in frames.
    feature_masks, feature_mask_width : int
        Number of coefficient masks per window and their maximum width.
    gain_db : float
        Level change drawn uniformly from ``[-gain_db, gain_db]`` per window; 0 disables.
    gain_scale : torch.Tensor or None
        ``(features,)``: change of each normalised feature per dB (see :meth:`gain_scale_for`).
    eq_db : float
        Largest excursion of the random EQ curve, in dB: each ``a_k`` is uniform in
        ``[-eq_db / bands, eq_db / bands]``; 0 disables.
    eq_basis : torch.Tensor or None
        ``(bands, features)``: change of each normalised feature per dB of ``a_k`` (see :meth:`eq_basis_for`).
    warp : float
        Largest relative frequency stretch: ``alpha`` is uniform in ``[1 - warp, 1 + warp]`` (one of the
        matrices of ``warp_maps``) per window; 0 disables.
    warp_maps : tuple of torch.Tensor or None
        ``(A, b)`` with shapes ``(steps, features, features)`` and ``(steps, features)``: the warp of the
        normalised features for each ``alpha`` of an even grid, ``x' = x @ A[k] + b[k]`` (see :meth:`warp_maps_for`).
    prob : float
        Probability that a window is augmented at all.
    """

    time_masks: int = 0
    time_mask_frames: int = 24
    feature_masks: int = 0
    feature_mask_width: int = 2
    gain_db: float = 0.0
    gain_scale: Optional[torch.Tensor] = None
    eq_db: float = 0.0
    eq_basis: Optional[torch.Tensor] = None
    warp: float = 0.0
    warp_maps: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    prob: float = 1.0

    @property
    def enabled(self) -> bool:
        masks = ((self.time_masks > 0 and self.time_mask_frames > 0)
                 or (self.feature_masks > 0 and self.feature_mask_width > 0))
        return self.prob > 0 and (masks or (self.gain_db > 0 and self.gain_scale is not None)
                                  or (self.eq_db > 0 and self.eq_basis is not None)
                                  or (self.warp > 0 and self.warp_maps is not None))

    @staticmethod
    def gain_scale_for(feature_extractor) -> torch.Tensor:
        """Per-feature change of the *normalised* features for +1 dB of level, for this feature extractor."""
        scale = torch.zeros(feature_extractor.feature_size)
        n = feature_extractor.n_coefficients
        if feature_extractor.feature_type == "mfcc":
            scale[0] = math.sqrt(feature_extractor.n_mels)  # c0 of an orthonormal DCT of n_mels dB values
        else:
            scale[:n] = 1.0
        return _normalised(scale, feature_extractor)

    @staticmethod
    def eq_basis_for(feature_extractor, bands: int = 4) -> torch.Tensor:
        """``(bands, features)``: change of the *normalised* features per dB of each EQ cosine ``a_k``."""
        n_mels, n = feature_extractor.n_mels, feature_extractor.n_coefficients
        if bands < 1:
            raise ValueError(f"eq bands must be at least 1, got {bands}")
        if feature_extractor.feature_type == "mfcc" and bands >= n:
            raise ValueError(f"eq bands ({bands}) must be fewer than the {n} MFCCs they shift")
        basis = torch.zeros(bands, feature_extractor.feature_size)
        if feature_extractor.feature_type == "mfcc":
            basis[torch.arange(bands), torch.arange(1, bands + 1)] = math.sqrt(n_mels / 2)
        else:
            k = torch.arange(1, bands + 1, dtype=torch.float64)
            m = torch.arange(n, dtype=torch.float64)
            basis[:, :n] = torch.cos(math.pi * k[:, None] * (m[None, :] + 0.5) / n).float()
        return _normalised(basis, feature_extractor)

    @staticmethod
    def warp_maps_for(feature_extractor, warp: float, steps: int = 21) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(A, b)``: the frequency warp of the *normalised* features for ``steps`` values of ``alpha``.

        ``alpha`` runs evenly over ``[1 - warp, 1 + warp]``; ``x @ A[k] + b[k]`` is the window ``x`` (time,
        features) with its spectral envelope stretched by ``alpha[k]`` (see the module docstring).
        """
        if not 0 < warp < 0.5:
            raise ValueError(f"warp must be in (0, 0.5), got {warp}")
        fe = feature_extractor
        n_mels, n = fe.n_mels, fe.n_coefficients
        # the bands' centres on the axis they are evenly spaced on: mel, or log-frequency for constant-Q bands
        scale = np.log2 if fe.feature_type == "cqt" else partial(hertz_to_mel, mel_scale="slaney")
        centres_hz = fe.band_frequencies()
        centres = scale(centres_hz)
        # (n, n_mels): envelope -> features (the DCT of the MFCCs; log-mel bands are the envelope itself)
        to_features = dct_matrix(n, n_mels).astype(np.float64) if fe.feature_type == "mfcc" else np.eye(n_mels)
        rows = np.arange(n_mels)
        maps = []
        for alpha in np.linspace(1 - warp, 1 + warp, steps):
            # band m of the warped envelope reads the original at f_m / alpha, linearly between band centres
            source = np.interp(scale(centres_hz / alpha), centres, rows)
            lo = np.floor(source).astype(int)
            interp = np.zeros((n_mels, n_mels))
            interp[rows, lo] += 1 - (source - lo)
            interp[rows, np.minimum(lo + 1, n_mels - 1)] += source - lo
            block = to_features @ interp @ to_features.T
            maps.append(np.kron(np.eye(fe.feature_size // n), block))  # the same warp on each delta order
        a = torch.tensor(np.stack(maps), dtype=torch.float32).transpose(1, 2)  # row vectors: x' = x @ W^T
        b = torch.zeros(steps, fe.feature_size)
        if _is_normalised(fe):
            mean = torch.tensor(fe.mean, dtype=torch.float32)
            std = torch.tensor(fe.std, dtype=torch.float32)
            # normalised: ((x * std + mean) @ W^T - mean) / std
            b = (mean @ a - mean) / std
            a = std[None, :, None] * a / std[None, None, :]
        return a, b

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return features
        batch, time, size = features.shape
        device = features.device
        chosen = (torch.rand(batch, device=device) < self.prob).view(batch, 1, 1)
        if self.warp > 0 and self.warp_maps is not None:
            a, b = (m.to(device=device, dtype=features.dtype) for m in self.warp_maps)
            k = torch.randint(0, a.shape[0], (batch,), device=device)
            warped = torch.bmm(features, a[k]) + b[k].unsqueeze(1)
            features = torch.where(chosen, warped, features)
        keep = torch.ones_like(features, dtype=torch.bool)
        keep = keep & ~self._spans(batch, time, self.time_masks, self.time_mask_frames, device).unsqueeze(2)
        keep = keep & ~self._spans(batch, size, self.feature_masks, self.feature_mask_width, device).unsqueeze(1)
        out = torch.where(keep | ~chosen, features, torch.zeros((), dtype=features.dtype, device=device))
        if self.gain_db > 0 and self.gain_scale is not None:
            gain = (torch.rand(batch, 1, 1, device=device) * 2 - 1) * self.gain_db * chosen
            out = out + gain * self.gain_scale.to(device=device, dtype=features.dtype)
        if self.eq_db > 0 and self.eq_basis is not None:
            bands = self.eq_basis.shape[0]
            a = (torch.rand(batch, 1, bands, device=device) * 2 - 1) * (self.eq_db / bands) * chosen
            out = out + a @ self.eq_basis.to(device=device, dtype=features.dtype)
        return out

    @staticmethod
    def _spans(batch: int, length: int, count: int, max_width: int, device) -> torch.Tensor:
        """``(batch, length)`` bool: ``count`` random spans of width ``0..max_width`` per row."""
        mask = torch.zeros(batch, length, dtype=torch.bool, device=device)
        if count <= 0 or max_width <= 0:
            return mask
        positions = torch.arange(length, device=device)
        for _ in range(count):
            width = torch.randint(0, min(max_width, length) + 1, (batch, 1), device=device)
            start = (torch.rand(batch, 1, device=device) * (length - width + 1)).floor().long()
            mask |= (positions >= start) & (positions < start + width)
        return mask
