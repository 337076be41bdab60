"""Fault injection: bad inputs and broken files must fail early with one clear message, never reach a result.

Each test builds the fault on tiny data: a crafted pickle, a 16-bit image,
a truncated or bit-flipped HDF5 file, a NaN row, a junk checkpoint, a
read-only folder, a full disk, a killed process. README.md ("What the
fault tests guarantee") lists what they check.
"""

from __future__ import annotations

import pickle
import sys
import types

import pytest

from pipeline.datasets import load_dataset
from pipeline.datasets.fewshot import FewShotPickleError, select_fewshot
from tests.test_datasets import make_pets

# --- few-shot pickles: no code runs from a dataset file --------------------------------------------------------------


class _Exploit:
    """Unpickling this calls `target(arg)`: the shape of every pickle exploit."""

    def __init__(self, target, arg):
        self.target, self.arg = target, arg

    def __reduce__(self):
        return self.target, (self.arg,)


def _fake_dassl_datum(monkeypatch):
    """Dassl's Datum class under its real module name, so pickles reference it as Dassl's do."""
    mod = types.ModuleType("dassl.data.datasets.base_dataset")

    class Datum:
        def __init__(self, impath, label, classname):
            self._impath, self._label, self._classname, self._domain = impath, label, classname, 0

    Datum.__module__, Datum.__qualname__ = mod.__name__, "Datum"
    mod.Datum = Datum
    for name in ("dassl", "dassl.data", "dassl.data.datasets"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return Datum


def _write_fewshot_pickle(root, blob, protocol=pickle.HIGHEST_PROTOCOL, shots=1, seed=1):
    (root / "split_fewshot").mkdir(exist_ok=True)
    path = root / "split_fewshot" / f"shot_{shots}-seed_{seed}.pkl"
    path.write_bytes(pickle.dumps(blob, protocol=protocol))
    return path


@pytest.fixture
def pets(tmp_path):
    make_pets(tmp_path, n_classes=3, per_class=3)
    return load_dataset("oxford_pets", tmp_path)


def _one_per_class(Datum, data, split="train"):
    items = getattr(data, split)
    firsts = {}
    for it in items:
        firsts.setdefault(it.label, it)
    return [Datum(f"/home/author/DATA/oxford_pets/{it.impath}", it.label, it.classname) for it in firsts.values()]


@pytest.mark.parametrize("target,arg", [(eval, "__import__('pathlib').Path('PWNED').touch()"),
                                        (exec, "import pathlib; pathlib.Path('PWNED').touch()"),
                                        (__import__, "os"), (getattr, "x")])
def test_malicious_fewshot_pickle_is_refused_and_runs_nothing(pets, monkeypatch, tmp_path, target, arg):
    monkeypatch.chdir(tmp_path)
    path = _write_fewshot_pickle(pets.root, {"train": [_Exploit(target, arg)], "val": []})
    with pytest.raises(FewShotPickleError, match=rf"refusing to load builtins\.{target.__name__}.*delete it"):
        select_fewshot(pets, 1, 1)
    assert not (tmp_path / "PWNED").exists()
    assert str(path) in str(pytest.raises(FewShotPickleError, select_fewshot, pets, 1, 1).value)


def test_pickle_naming_another_module_is_refused(pets):
    import os

    _write_fewshot_pickle(pets.root, {"train": [_Exploit(os.system, "true")]})
    with pytest.raises(FewShotPickleError, match=r"refusing to load (posix|nt)\.system"):
        select_fewshot(pets, 1, 1)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_genuine_dassl_pickle_loads_under_every_protocol(pets, monkeypatch, protocol):
    Datum = _fake_dassl_datum(monkeypatch)
    blob = {"train": _one_per_class(Datum, pets), "val": _one_per_class(Datum, pets, "val")}
    _write_fewshot_pickle(pets.root, blob, protocol)
    monkeypatch.undo()  # loading needs no Dassl
    train, val = select_fewshot(pets, 1, 1)
    assert [pets.train[i].label for i in train] == [0, 1, 2] and len(val) == 3


def test_empty_or_partial_selection_is_refused(pets, monkeypatch):
    Datum = _fake_dassl_datum(monkeypatch)
    _write_fewshot_pickle(pets.root, {"train": [], "val": []})
    with pytest.raises(FewShotPickleError, match="train selection is empty"):
        select_fewshot(pets, 1, 1)
    _write_fewshot_pickle(pets.root, {"train": _one_per_class(Datum, pets)[:2], "val": _one_per_class(Datum, pets, "val")})
    with pytest.raises(FewShotPickleError, match=r"no image of 1 classes, e.g. \['breed_2'\]"):
        select_fewshot(pets, 1, 1)
    _write_fewshot_pickle(pets.root, ["not", "a", "selection"])
    with pytest.raises(FewShotPickleError, match="not a Dassl few-shot pickle"):
        select_fewshot(pets, 1, 1)
    (pets.root / "split_fewshot" / "shot_1-seed_1.pkl").write_bytes(b"\x80\x05garbage")
    with pytest.raises(FewShotPickleError, match="not a readable few-shot pickle"):
        select_fewshot(pets, 1, 1)
