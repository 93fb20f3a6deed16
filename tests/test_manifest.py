"""The weights manifest (formnet_cli.hub.manifest): schema, one-line errors, checksums."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from formnet_cli.hub.manifest import (
    ManifestError,
    file_matches,
    folder_matches,
    is_commit,
    load_manifest,
    manifest_entry_for,
    parse_manifest,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "formnet/formnet-weights"


@pytest.fixture
def tiny_denoiser(tiny_models) -> Path:
    """A real checkpoint folder: config.json, model.safetensors, README.md."""
    return tiny_models.denoise_gray


def test_bundled_manifest_matches_the_bundled_files():
    manifest = load_manifest()
    assert (manifest.folder / "manifest.json").is_file()
    assert manifest.repo == REPO
    assert all(entry.revision is None or len(entry.revision) == 40 for entry in manifest.models)
    defaults = {(entry.task, entry.channels) for entry in manifest.models if entry.default}
    assert {("denoise", 1), ("denoise", 3), ("jpeg", 1), ("sr", 1)} <= defaults
    for entry in manifest.models:  # a stale sha256 or size would make downloads fail verification
        assert folder_matches(manifest.folder / entry.name, entry), entry.name


def test_manifest_entry_for_describes_the_folder(tiny_denoiser):
    entry = manifest_entry_for(tiny_denoiser, revision=COMMIT)
    assert (entry["task"], entry["channels"], entry["revision"]) == ("denoise", 1, COMMIT)
    assert [file["path"] for file in entry["files"]] == ["config.json", "model.safetensors",
                                                         "README.md"]
    weights = next(file for file in entry["files"] if file["path"] == "model.safetensors")
    assert weights["size"] == (tiny_denoiser / "model.safetensors").stat().st_size
    parsed = parse_manifest({"hub": {"repo": REPO}, "models": [entry]}, folder=tiny_denoiser.parent)
    assert parsed.models[0].subfolder == "tiny-denoise-gray"
    assert parsed.models[0].repo_path(parsed.models[0].files[0]) == "tiny-denoise-gray/config.json"


def test_entry_revision_inherits_hub_revision_and_null_means_unpublished(tiny_denoiser):
    entry = manifest_entry_for(tiny_denoiser)
    del entry["revision"]
    unpublished = dict(entry, name="other", revision=None)
    manifest = parse_manifest({"hub": {"repo": REPO, "revision": COMMIT},
                               "models": [entry, unpublished]}, folder=tiny_denoiser.parent)
    assert manifest.require("tiny-denoise-gray").revision == COMMIT
    assert manifest.require("other").published is False


@pytest.mark.parametrize("change, message", [
    (lambda e: e.update(revision="main"), "full 40-digit commit"),
    (lambda e: e.update(task="deblur"), "task must be one of"),
    (lambda e: e.update(channels=2), "channels must be 1 or 3"),
    (lambda e: e["files"][0].update(sha256="abc"), "sha256 must be 64"),
    (lambda e: e["files"][0].update(path="../config.json"), "plain file name"),
    (lambda e: e.pop("task"), "lacks 'task'"),
])
def test_invalid_manifest_entries_are_one_line_errors(tiny_denoiser, change, message):
    entry = manifest_entry_for(tiny_denoiser)
    change(entry)
    with pytest.raises(ManifestError, match=message) as caught:
        parse_manifest({"hub": {"repo": REPO}, "models": [entry]}, folder=tiny_denoiser.parent)
    assert "\n" not in str(caught.value)


def test_two_defaults_for_the_same_task_and_channels_are_rejected(tiny_denoiser):
    entry = manifest_entry_for(tiny_denoiser, default=True)
    with pytest.raises(ManifestError, match="two defaults"):
        parse_manifest({"hub": {"repo": REPO}, "models": [entry, dict(entry, name="copy")]},
                       folder=tiny_denoiser.parent)


def test_a_file_matches_only_with_its_size_and_sha256(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"{}\n")
    listed = parse_manifest({"hub": {"repo": REPO}, "models": [{
        "name": "m", "task": "denoise", "channels": 1,
        "files": [{"path": "config.json", "sha256": hashlib.sha256(b"{}\n").hexdigest(), "size": 3}]}]},
        folder=tmp_path).models[0]
    assert file_matches(path, listed.files[0]) and folder_matches(tmp_path, listed)
    path.write_bytes(b"[]\n")  # same size, other bytes
    assert not file_matches(path, listed.files[0])
    path.unlink()
    assert not file_matches(path, listed.files[0])  # missing: no error, just no match


def test_only_full_commits_are_revisions():
    assert is_commit(COMMIT)
    assert not is_commit("main") and not is_commit(COMMIT[:12]) and not is_commit(COMMIT.upper())
