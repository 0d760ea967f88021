"""Packaged GGUF models: assembly from parts, verification, and clear errors."""

import hashlib
import sys

import pytest

from cope.errors import ModelFileError
from cope.models import packaged
from cope.models.packaged import ModelPart, PackagedModel, ensure_packaged_model


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """A model split over two fake part packages on sys.path."""
    site = tmp_path / "site"
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 777]
    for k, chunk in enumerate(chunks, start=1):
        pkg = site / f"fakepart{k}" / "data"
        pkg.mkdir(parents=True)
        (pkg.parent / "__init__.py").write_text("raise RuntimeError('never imported')\n")
        (pkg / f"part{k:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("COPE_HOME", str(tmp_path / "home"))
    model = PackagedModel(
        "fake", "fake.gguf", hashlib.sha256(b"".join(chunks)).hexdigest(),
        tuple(ModelPart(f"fakepart{k}", f"data/part{k:02d}.bin", f"fake-part{k}==1.0",
                        hashlib.sha256(chunks[k - 1]).hexdigest()) for k in (1, 2)),
    )
    monkeypatch.setitem(packaged.PACKAGED_MODELS, "fake", model)
    return site, model, chunks


def test_assembles_once_and_reuses(fake_parts):
    site, model, chunks = fake_parts
    path = ensure_packaged_model("fake")
    assert path.read_bytes() == b"".join(chunks)
    assert "fakepart1" not in sys.modules  # located, never imported
    mtime = path.stat().st_mtime_ns
    assert ensure_packaged_model("fake") == path
    assert path.stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_a_corrupt_part_is_refused_and_names_the_package(fake_parts):
    site, model, chunks = fake_parts
    (site / "fakepart2" / "data" / "part02.bin").write_bytes(b"c" * 777)
    with pytest.raises(ModelFileError) as info:
        ensure_packaged_model("fake")
    message = str(info.value)
    assert "sha256" in message and "'fake-part2==1.0'" in message
    assert "fake-part1" not in message  # the intact part is not blamed
    assert not (packaged.models_dir() / "fake.gguf").exists()


def test_a_part_changed_after_assembly_is_rechecked(fake_parts):
    site, model, chunks = fake_parts
    ensure_packaged_model("fake")
    (site / "fakepart1" / "data" / "part01.bin").write_bytes(b"GGUF" + b"z" * 1000)
    with pytest.raises(ModelFileError, match="sha256"):
        ensure_packaged_model("fake")


def test_a_missing_part_names_the_package(fake_parts):
    site, model, chunks = fake_parts
    (site / "fakepart2" / "data" / "part02.bin").unlink()
    with pytest.raises(ModelFileError) as info:
        ensure_packaged_model("fake")
    assert "fake-part2==1.0" in str(info.value) and "fake-part1" not in str(info.value)


def test_unknown_packaged_model_lists_the_known_ones():
    with pytest.raises(ModelFileError) as info:
        ensure_packaged_model("qwen-coder-7b")
    assert "qwen-coder-0.5b" in str(info.value) and "smollm2-135m" in str(info.value)
