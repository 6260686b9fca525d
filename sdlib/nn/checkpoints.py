"""Checkpoints of Section 5 fits: written atomically, read back only when they match.

A checkpoint holds a fit's weights, its record, its fp32 validation probabilities (which its
students' alpha-hat reads, eq. 16), its identity and a fingerprint of every fit it read.

Identity: every checkpoint, and ``checkpoint_dir/config.json``, records the parameters that shape a
fit plus the device type and the precision actually used (:func:`fit_identity`); a checkpoint made
with another identity is never loaded: resuming with other settings is a :class:`UsageError`.
A fit whose teacher (or alpha-hat input) is no longer the one it was trained from is trained again
(:func:`upstream_changed`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from sdlib.errors import UsageError
from sdlib.nn.config import ExperimentConfig
from sdlib.nn.fitting import precision
from sdlib.nn.plan import FitKey, needs_of
from sdlib.provenance import write_json_atomic

__all__ = ["IDENTITY_KEYS", "fit_identity", "save_checkpoint", "load_checkpoint", "CorruptCheckpointWarning",
           "load_matching", "fingerprint", "upstream_changed", "check_checkpoint_dir", "record_identity"]

#: Parameters that change what a fit computes (with the device type and precision: :func:`fit_identity`).
IDENTITY_KEYS = ("dataset", "arch", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "n_train",
                 "n_val", "n_test", "split_seed", "augment", "alpha_hat_clip", "data_dir")


class CorruptCheckpointWarning(UserWarning):
    """A checkpoint could not be read; the step it held is trained again."""


def fit_identity(cfg: ExperimentConfig, device_type: str) -> dict[str, Any]:
    """What a checkpoint must match to be reused: :data:`IDENTITY_KEYS`, the device type (``cpu`` or
    ``cuda``) and the precision actually used (``fp32`` or ``bf16``; a CPU run is fp32 whatever
    ``amp`` says), channels_last and compile as they take effect (CUDA only)."""
    cuda = device_type == "cuda"
    return {**{k: getattr(cfg, k) for k in IDENTITY_KEYS}, "device_type": device_type,
            "precision": precision(cfg, device_type), "channels_last": bool(cfg.channels_last and cuda),
            "compile": bool(cfg.compile and cuda)}


def save_checkpoint(path: str | Path, obj: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (``torch.load(weights_only=True)``), None if absent; a file that
    cannot be read gives a :class:`CorruptCheckpointWarning` and None (the step is retrained).
    ``mmap``: map the tensors instead of reading them (to read only the record)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        if not isinstance(obj, dict) or "state_dict" not in obj or "record" not in obj:
            raise ValueError("not a sdlib.nn checkpoint (no state_dict/record)")
        return obj
    except Exception as e:  # noqa: BLE001 - any unreadable file means: retrain this step
        warnings.warn(f"checkpoint {path} is corrupt ({type(e).__name__}: {e}); retraining that step",
                      CorruptCheckpointWarning, stacklevel=2)
        return None


def _differences(have: dict[str, Any], identity: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (have.get(k), v) for k, v in identity.items() if have.get(k) != v}


def load_matching(path: Path, identity: dict[str, Any], *, mmap: bool = False) -> dict[str, Any] | None:
    """A finished fit's checkpoint, None if absent or unreadable; another identity is an error."""
    ck = load_checkpoint(path, mmap=mmap)
    if ck is not None and ck.get("identity") != identity:
        diff = _differences(ck.get("identity") or {}, identity)
        raise UsageError(f"checkpoint {path} was made with other settings (name: (then, now)) {diff}; "
                         "use another checkpoint directory or delete it")
    return ck


def fingerprint(ck: dict[str, Any]) -> str:
    """What a fit handed on: its record (without wall-clock seconds) and its validation
    probabilities, which the students' teachers and alpha-hat read."""
    record = {k: v for k, v in ck["record"].items() if not k.startswith("seconds")}
    h = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode())
    probs = ck.get("val_probs")
    if probs is not None:
        h.update(probs.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def upstream_changed(key: FitKey, ck: dict[str, Any], ck_dir: Path, identity: dict[str, Any]) -> bool:
    """Whether a fit it read (teacher, alpha-hat's inputs) is not the one it was trained from: a teacher
    retrained since (its checkpoint was lost) must not stay under a student of the old one."""
    made_from = ck.get("needs")
    if not isinstance(made_from, dict):   # a checkpoint of an older version: nothing to compare
        return False
    for need in needs_of(key):
        need_ck = load_matching(need.path(ck_dir), identity, mmap=True)
        if need_ck is None or made_from.get(need.name) != fingerprint(need_ck):
            return True
    return False


def check_checkpoint_dir(ckpt_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse a checkpoint directory whose ``config.json`` records another identity."""
    path = ckpt_dir / "config.json"
    if path.exists():
        diff = _differences(json.loads(path.read_text()), identity)
        if diff:
            raise UsageError(f"checkpoint directory {ckpt_dir} was made with other settings (name: (then, now)) "
                             f"{diff}; use another --checkpoint-dir or delete it")


def record_identity(ckpt_dir: Path, identity: dict[str, Any]) -> None:
    """Write ``ckpt_dir/config.json`` once a fit is done: a start refused before anything was trained
    (data missing, ``n_train`` too large) must not block the corrected rerun."""
    path = ckpt_dir / "config.json"
    if not path.exists():
        write_json_atomic(path, identity)
