"""Registry: resolution order, defaults, listings and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formnet_cli.hub import registry as registry
from formnet_cli.hub.checkpoint import load_checkpoint, save_checkpoint
from formnet_cli.config import ModelConfig, NetworkConfig
from formnet_cli.errors import DownloadError, InvalidOptionError, ModelNotFoundError
from formnet_cli.hub.manifest import manifest_entry_for
from formnet_cli.models import FormResNet, count_parameters

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "formnet/formnet-weights"


def make_checkpoint(folder: Path, task: str = "denoise", channels: int = 1,
                    scores: dict[str, float] | None = None) -> Path:
    """A real (tiny) checkpoint folder: config.json, model.safetensors, README.md."""
    config = ModelConfig(task=task, channels=channels,
                         residual=NetworkConfig(kind="plain", widths=(4,), depth=2, unshuffle=1))
    return save_checkpoint(FormResNet(config), folder, folder.name, card=f"# {folder.name}\n",
                           scores=scores or {"set12_sigma25_psnr": 30.5})


def write_manifest(folder: Path, entries: list[dict], revision: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"schema_version": 1, "hub": {"repo": REPO, "revision": revision},
                                "models": entries}))
    return path


def put_in_cache(cache: Path, source: Path, subfolder: str, commit: str = COMMIT,
                 repo: str = REPO) -> Path:
    """Lay a model out the way huggingface_hub's cache does (snapshot files; no network)."""
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / commit / subfolder
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    return snapshot


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    from huggingface_hub import constants

    for name in ("FORMNET_WEIGHTS_DIR", "FORMNET_HUB_REPO", "FORMNET_HUB_REVISION", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("trained") / "denoise-gray")


@pytest.fixture
def setup(tmp_path, trained):
    """A manifest listing a published gray denoiser and an unpublished color one."""
    bundled = tmp_path / "weights"
    gray = manifest_entry_for(trained, default=True, revision=COMMIT)
    color_folder = make_checkpoint(bundled / "denoise-color", channels=3)
    color = manifest_entry_for(color_folder, default=True)
    manifest = registry.load_manifest(write_manifest(bundled, [gray, color]))
    return manifest, bundled


def test_default_model_is_an_exact_task_and_channels_match(setup):
    manifest, _ = setup
    assert registry.default_model_name("denoise", 1, manifest) == "denoise-gray"
    assert registry.default_model_name("denoise", 3, manifest) == "denoise-color"
    with pytest.raises(ModelNotFoundError) as caught:
        registry.default_model_name("sr", 1, manifest)
    assert str(caught.value).startswith("no trained weights for task 'sr' (gray)")


def test_missing_published_default_says_which_download_gets_it(setup):
    manifest, _ = setup
    with pytest.raises(ModelNotFoundError) as caught:
        registry.resolve_model(None, "denoise", 1, manifest=manifest)
    message = str(caught.value)
    assert message == ("no trained weights for task 'denoise' (gray) on this machine; run "
                       "'formnet download-weights denoise-gray' or pass --model PATH")


def test_resolution_order_path_folder_cache_bundled(setup, tmp_path, trained):
    manifest, bundled = setup
    cache = tmp_path / "hub-cache"
    # bundled only
    make_checkpoint(bundled / "denoise-gray")
    found = registry.resolve_model("denoise-gray", "denoise", 1, manifest=manifest)
    assert (found.source, found.path) == ("bundled", bundled / "denoise-gray")
    # the hub cache (at the pinned revision) wins over bundled
    snapshot = put_in_cache(cache, trained, "denoise-gray")
    found = registry.resolve_model(None, "denoise", 1, manifest=manifest)
    assert (found.name, found.source, found.path) == ("denoise-gray", "cache", snapshot)
    model, info = load_checkpoint(found.path)
    assert info.model.channels == 1
    # the configured weights folder wins over the cache
    weights_dir = tmp_path / "mine"
    make_checkpoint(weights_dir / "denoise-gray")
    found = registry.resolve_model("denoise-gray", weights_dir=weights_dir, manifest=manifest)
    assert (found.source, found.path) == ("folder", weights_dir / "denoise-gray")
    # an explicit path wins over everything and needs no manifest entry
    found = registry.resolve_model(str(trained), "denoise", 1, manifest=manifest)
    assert (found.source, found.path) == ("path", trained)
    found = registry.resolve_model(trained / "model.safetensors", manifest=manifest)
    assert found.path == trained


def test_weights_dir_comes_from_the_environment(setup, tmp_path, monkeypatch):
    manifest, _ = setup
    make_checkpoint(tmp_path / "env-weights" / "denoise-gray")
    monkeypatch.setenv("FORMNET_WEIGHTS_DIR", str(tmp_path / "env-weights"))
    assert registry.resolve_model("denoise-gray", manifest=manifest).source == "folder"


def test_cache_at_another_revision_is_not_used(setup, tmp_path, trained):
    manifest, _ = setup
    put_in_cache(tmp_path / "hub-cache", trained, "denoise-gray", commit="f" * 40)
    with pytest.raises(ModelNotFoundError):
        registry.resolve_model("denoise-gray", manifest=manifest)


def test_corrupt_cached_file_is_an_error_not_a_silent_load(setup, tmp_path, trained):
    manifest, _ = setup
    snapshot = put_in_cache(tmp_path / "hub-cache", trained, "denoise-gray")
    data = bytearray((snapshot / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (snapshot / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="download-weights denoise-gray"):
        registry.resolve_model("denoise-gray", manifest=manifest)


def test_unknown_names_and_paths_are_one_line_errors(setup, tmp_path):
    manifest, _ = setup
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'nope' \(known: denoise-gray, "
                                                 r"denoise-color\)"):
        registry.resolve_model("nope", manifest=manifest)
    with pytest.raises(InvalidOptionError):  # a typo in --model: a usage error
        registry.resolve_model("nope", manifest=manifest)
    with pytest.raises(ModelNotFoundError, match="no such checkpoint folder") as missing:
        registry.resolve_model(str(tmp_path / "missing"), manifest=manifest)
    assert not isinstance(missing.value, InvalidOptionError)  # a missing resource (exit 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        registry.resolve_model(str(tmp_path / "empty"), manifest=manifest)


def test_a_training_run_folder_resolves_to_its_exported_checkpoint(setup, tmp_path):
    manifest, _ = setup
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "log.jsonl", "state.pt"):  # what the trainer writes first
        (run / name).write_text("{}\n")
    with pytest.raises(ModelNotFoundError, match="training run with no exported checkpoint") as caught:
        registry.resolve_model(str(run), manifest=manifest)
    assert "\n" not in str(caught.value) and str(run / "model") in str(caught.value)
    make_checkpoint(run / "model")  # the export at the end of training
    found = registry.resolve_model(str(run), "denoise", manifest=manifest)
    assert (found.path, found.source) == (run / "model", "path")
    load_checkpoint(found.path)


def test_a_bare_folder_name_that_is_no_checkpoint_says_so(setup, tmp_path, monkeypatch):
    manifest, _ = setup
    monkeypatch.chdir(tmp_path)
    Path("my-model").mkdir()  # given as --model my-model, without ./
    with pytest.raises(ModelNotFoundError, match="my-model: not a formnet checkpoint folder"):
        registry.resolve_model("my-model", manifest=manifest)


def test_a_listed_model_for_another_task_is_refused(setup):
    manifest, _ = setup
    with pytest.raises(InvalidOptionError, match="restores 'denoise', not 'sr'"):
        registry.resolve_model("denoise-color", "sr", 3, manifest=manifest)


def test_channels_are_answered_exactly(setup):
    manifest, bundled = setup
    found = registry.resolve_model(None, "denoise", 3, manifest=manifest)
    assert (found.name, found.source) == ("denoise-color", "bundled")


def test_list_models_shows_source_parameters_and_scores(setup, tmp_path, trained):
    manifest, bundled = setup
    make_checkpoint(bundled / "sr-extra", task="sr", scores={"set5_x4_psnr": 28.25})
    weights_dir = tmp_path / "mine"
    make_checkpoint(weights_dir / "my-jpeg", task="jpeg", channels=3)
    rows = {row.name: row for row in registry.list_models(weights_dir=weights_dir,
                                                          manifest=manifest)}
    assert rows["denoise-gray"].source == "not downloaded"
    assert rows["denoise-gray"].parameters is None
    color = rows["denoise-color"]
    assert (color.source, color.channels, color.default) == ("bundled", 3, True)
    model, _ = load_checkpoint(bundled / "denoise-color")
    assert color.parameters == count_parameters(model)
    assert rows["sr-extra"].scores == {"set5_x4_psnr": 28.25}
    assert (rows["sr-extra"].source, rows["sr-extra"].task) == ("bundled", "sr")
    assert (rows["my-jpeg"].source, rows["my-jpeg"].task) == ("folder", "jpeg")
    put_in_cache(tmp_path / "hub-cache", trained, "denoise-gray")
    rows = {row.name: row for row in registry.list_models(manifest=manifest)}
    assert rows["denoise-gray"].source == "cache"
    assert rows["denoise-gray"].scores == {"set12_sigma25_psnr": 30.5}


def test_a_formatter_picks_the_tasks_model_of_that_form_or_names_the_forms_there_are():
    from formnet_cli.hub.registry import model_with_formatter

    assert model_with_formatter("denoise", 1, "none") == "denoise-gray"
    assert model_with_formatter("denoise", 3, "none") == "denoise-color"
    assert model_with_formatter("denoise", 1, "bm3d") == "denoise-gray-bm3d"
    assert model_with_formatter("denoise", 3, "bm3d") == "denoise-gray-bm3d"  # run per channel
    with pytest.raises(ModelNotFoundError, match="formats with 'cnn'.*bm3d: denoise-gray-bm3d"):
        model_with_formatter("denoise", 1, "cnn")
