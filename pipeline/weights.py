"""Reading weight files safely: tensors and plain containers only, never code.

A pickled checkpoint can name any Python callable, which runs when it is
loaded; `torch.load(weights_only=True)` refuses those, and this module turns
each way a file can be unusable into one message naming the file and the fix.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint file exists but is corrupt, unsafe, or belongs to another architecture."""


def read_weights(path: str | Path, fix: str) -> object:
    """The contents of a torch or safetensors weight file; `fix` says how to get a good one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {fix}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path, fix)
    try:
        # mmap reads tensors lazily, so validating a large checkpoint costs little memory.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower() and "weights_only" not in str(err):
            raise CheckpointError(f"{path} is not a PyTorch checkpoint ({_first_line(err)}); {fix}") from err
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"the Python object {found.group(1)}" if found else "Python objects besides tensors"
        raise CheckpointError(
            f"{path} is not a plain weights file: it pickles {what}, which would run code when loaded, "
            "so it is refused; "
            "re-save only its tensors (torch.save(model.state_dict(), path)) or convert it to safetensors"
        ) from None
    except Exception as err:  # a truncated or foreign file fails in the unpickler in many ways
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {_first_line(err)}); "
            f"it may be truncated or another kind of file: {fix}"
        ) from err


def _read_safetensors(path: Path, fix: str) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # SafetensorError and friends do not share a useful base class
        raise CheckpointError(f"{path} is not a readable safetensors file ({_first_line(err)}); {fix}") from err


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
