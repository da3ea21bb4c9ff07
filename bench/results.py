"""Run records: one JSON file per (method, cell), keyed by a hash of everything that changes the result, written
atomically (temporary file + rename), so a reader never sees a half-written record and two writers never clash.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import resource
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import torch

from methods.train.precision import native_bf16_cpu
from splits.permissions import honour_umask

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "scikit-learn",
            "recbole", "numpy", "pandas")


def record_key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record_path(results_dir: str | Path, dataset: str, shift: str, method: str, key: str) -> Path:
    return Path(results_dir) / dataset / shift / f"{method.replace('+', '_')}-{key}.json"


def check_writable(folder: str | Path, what: str) -> None:
    """Create `folder` if needed and write a probe file in it; an OSError naming `what` and the folder otherwise."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OSError(f"{what} {str(folder)!r} is not a writable folder: {err.strerror or err}") from None


def write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=2, sort_keys=True, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        honour_umask(tmp)  # mkstemp makes it 0600; a results folder shared by a group must stay readable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_records(results_dir: str | Path) -> list[dict]:
    """Every record under `results_dir`: ``*.json`` as runs write them, and ``*.json.gz`` as committed leaderboard
    records are kept (``gzip -n``); unreadable files are skipped."""
    records = []
    folder = Path(results_dir)
    for path in sorted([*folder.rglob("*.json"), *folder.rglob("*.json.gz")]):
        try:
            text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
            records.append(json.loads(text))
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError):
            continue
    return records


def environment(device, autocast: str | None = None) -> dict:
    """Where a record was computed: versions, machine, CPU kernels, device, git state; `autocast`: the run's resolved
    mixed precision ("bf16" or "fp32", `methods.train.precision`), None where the caller does not say."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"versions": versions, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_kernels": cpu_kernels(), "device": device_name(device), "git_commit": GIT_COMMIT,
            "git_dirty": GIT_DIRTY, "world_size": int(os.environ.get("WORLD_SIZE", "1")), "autocast": autocast}


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads, {cpu_model()})"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux): CPU float results are bit-identical only on the same model."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_kernels() -> dict:
    """What torch computes CPU floats with: ATen's SIMD dispatch level, the BLAS it was built with, oneDNN."""
    blas = [part.split("=", 1)[1] for part in torch.__config__.show().replace(",", " ").split()
            if part.startswith("BLAS_INFO=")]
    return {"capability": torch.backends.cpu.get_cpu_capability(), "blas": blas[0] if blas else None,
            "onednn": torch.backends.mkldnn.is_available(), "native_bf16": native_bf16_cpu()}


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str | None:
    return _git("rev-parse", "HEAD") or None


# Read once, when the code is imported: a long grid run records the commit of the code it runs, even if the
# checkout moves on meanwhile. Dirty: tracked files differed from that commit (None outside a git checkout).
GIT_COMMIT = git_commit()
_status = _git("status", "--porcelain", "--untracked-files=no") if GIT_COMMIT else None
GIT_DIRTY = None if _status is None else bool(_status)


def peak_memory_mb(device) -> dict:
    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.device(device).type == "cuda":
        peak["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak
