"""Issue 18, item 7 and the structurally edited BIEs: each case of ``_cases.CASES`` edits a valid
BIE, writes it through npuflow's writer (checksum recomputed) and checks what loading does: an
out-of-spec edit is a ModelLoadError naming the file, the step and the field (also as one line
and exit 2 from ``npuflow check``); an in-spec edit loads and runs, its outputs in range."""
from __future__ import annotations

import numpy as np
import pytest

import npuflow
from npuflow.cli import main
from npuflow.errors import ModelLoadError

from ._cases import CASES, Case
from ._edit import edited


def _write(case: Case, sources, tmp_path):
    return edited(sources[case.src], tmp_path / f"{case.id}.bie", case.edit)


def _run_in_range(path) -> None:
    m = npuflow.load(str(path))
    rng = np.random.default_rng(0)
    feeds = {s.name: rng.uniform(0, 1, s.shape).astype(np.float32) for s in m.inputs}
    outs = m.run(feeds, data_type="fixed")
    for name, y in zip(m.output_names, outs):
        f = m.program.formats[name]
        assert y.dtype == f.dtype, (name, y.dtype, f)
        assert f.qmin <= int(y.min()) and int(y.max()) <= f.qmax


@pytest.mark.parametrize("case", [c for c in CASES if c.expect is not None], ids=lambda c: c.id)
def test_refused(case: Case, sources, tmp_path, capsys):
    path = _write(case, sources, tmp_path)
    with pytest.raises(ModelLoadError) as ei:
        npuflow.load(str(path))
    msg = str(ei.value)
    assert str(path) in msg and "\n" not in msg
    for frag in case.expect:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    capsys.readouterr()
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("npuflow check: error: ") and str(path) in err


@pytest.mark.parametrize("case", [c for c in CASES if c.expect is None], ids=lambda c: c.id)
def test_in_spec_edit_runs(case: Case, sources, tmp_path, capsys):
    path = _write(case, sources, tmp_path)
    _run_in_range(path)
    assert main(["check", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert out.count("\n") == 1 and "valid npuflow BIE" in out


def test_case_ids_unique():
    assert len({c.id for c in CASES}) == len(CASES)
