"""CITATION.cff is valid Citation File Format 1.2.0 and agrees with the package and the book.

* ``cffconvert --validate`` (the reference validator; it pins an old jsonschema, so ``make test``
  installs it into a venv of its own, ``.venv/cffconvert``) accepts CITATION.cff, and rejects a
  copy with a defect (so that the check can fail at all).
* Its ``version`` is the package's (pyproject.toml); while ``repository.url`` in _config.yml is the
  placeholder, the file names no repository, and once it is set, ``repository-code`` is that URL.
* It cites the paper the book accompanies, as book/references.bib does.

Without cffconvert the validation is skipped with a message, except under CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CFF = ROOT / "CITATION.cff"


def _cffconvert() -> str:
    exe = ROOT / ".venv" / "cffconvert" / "bin" / "cffconvert"
    found = str(exe) if exe.exists() else shutil.which("cffconvert")
    if found is None:
        msg = ("cffconvert is not installed (make test installs it into .venv/cffconvert): "
               "CITATION.cff is not validated")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but " + msg)
        pytest.skip(msg)
    return found


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_cffconvert(), "--validate", "-i", str(path)], capture_output=True, text=True,
                          timeout=120)


def test_citation_cff_is_valid() -> None:
    proc = _validate(CFF)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout + proc.stderr


@pytest.mark.parametrize("defect", ["no authors", "version as a list", "unknown key"])
def test_validator_rejects_a_defective_copy(tmp_path: Path, defect: str) -> None:
    data = yaml.safe_load(CFF.read_text(encoding="utf8"))
    if defect == "no authors":
        del data["authors"]
    elif defect == "version as a list":
        data["version"] = [data["version"]]
    else:
        data["titel"] = data["title"]
    bad = tmp_path / "CITATION.cff"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf8")
    assert _validate(bad).returncode != 0, f"cffconvert accepted a CITATION.cff with {defect}"


def _cff() -> dict:
    return yaml.safe_load(CFF.read_text(encoding="utf8"))


def test_version_is_the_package_version() -> None:
    # the installed (editable) package's version is pyproject.toml's
    assert str(_cff()["version"]) == metadata.version("sdlib")
    assert f'version = "{_cff()["version"]}"' in (ROOT / "pyproject.toml").read_text(encoding="utf8")


def test_repository_agrees_with_the_book() -> None:
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from sdlib_book.launch import repository_is_placeholder
    finally:
        sys.path.pop(0)
    url = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))["repository"]["url"]
    cff = _cff()
    named = [cff.get(k) for k in ("repository-code", "repository", "url") if cff.get(k)]
    if repository_is_placeholder(url):
        assert not named, f"CITATION.cff names {named} while repository.url in _config.yml is the placeholder"
        assert "your-" not in CFF.read_text(encoding="utf8").lower()
    else:
        assert cff.get("repository-code", "").rstrip("/") == url.rstrip("/"), (
            "set repository-code in CITATION.cff to repository.url of _config.yml")


def test_cites_the_paper() -> None:
    from pybtex.database import parse_file

    paper = parse_file(str(ROOT / "book" / "references.bib")).entries["borup2021teacher"]
    refs = [r for r in _cff().get("references", []) if r.get("title") == paper.fields["title"]]
    assert refs, "CITATION.cff does not list the paper (book/references.bib: borup2021teacher) in references"
    ref = refs[0]
    assert str(ref["year"]) == paper.fields["year"]
    assert [a["family-names"] for a in ref["authors"]] == [p.last_names[0] for p in paper.persons["author"]]
