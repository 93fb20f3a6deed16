"""The plan of store inputs and outputs (:mod:`formnet_cli.batch.remote`), on fsspec's in-memory
store (the same code reads S3: ``tests/test_batch_ray.py`` runs it against an S3 server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from formnet_cli.batch import remote
from formnet_cli.batch.remote import StorePath
from formnet_cli.errors import InvalidOptionError

fsspec = pytest.importorskip("fsspec")


@pytest.fixture
def bucket(request):
    """An empty in-memory bucket, ``memory://<test name>``; ``put(key)`` adds an object."""
    fs = fsspec.filesystem("memory")
    name = request.node.name.replace("[", "-").replace("]", "")
    root = f"memory://{name}"

    def put(*keys: str) -> None:
        for key in keys:
            fs.pipe(f"{root}/{key}", b"object")

    yield root, put
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def plan_of(batch) -> list[tuple[str, str]]:
    return [(str(job.input), str(job.output)) for job in batch.jobs]


def settled_of(batch) -> list[tuple[str, str, str]]:
    return [(str(result.input), result.status, result.reason) for result in batch.settled]


def test_a_prefix_is_a_folder_mirrored_under_the_output(bucket):
    root, put = bucket
    put("in/a.png", "in/notes.txt", "in/.hidden.png", "in/sub/b.tif", "in/sub/deeper/c.jpg")
    flat = remote.plan([f"{root}/in"], f"{root}/out")
    assert plan_of(flat) == [(f"{root}/in/a.png", f"{root}/out/a.png")]
    assert settled_of(flat)[0][:2] == (f"{root}/in/notes.txt", "skipped")
    assert f"{root}/in: 1 subfolder(s) not entered (use --recursive)" in flat.notes
    walked = remote.plan([f"{root}/in/"], f"{root}/out/", recursive=True, ext="png")
    assert plan_of(walked) == [(f"{root}/in/a.png", f"{root}/out/a.png"),
                               (f"{root}/in/sub/b.tif", f"{root}/out/sub/b.png"),
                               (f"{root}/in/sub/deeper/c.jpg", f"{root}/out/sub/deeper/c.png")]
    assert all(isinstance(job.output, StorePath) for job in walked.jobs)


def test_earlier_outputs_inside_the_input_prefix_are_not_inputs(bucket):
    root, put = bucket
    put("scans/a.png", "scans/restored/a.png")
    batch = remote.plan([f"{root}/scans"], f"{root}/scans/restored", recursive=True)
    assert plan_of(batch) == [(f"{root}/scans/a.png", f"{root}/scans/restored/a.png")]


def test_outputs_that_clash_or_overwrite_their_input_fail(bucket):
    root, put = bucket
    put("in/a.jpg", "in/a.png")
    clash = remote.plan([f"{root}/in"], f"{root}/out", ext="png")
    assert plan_of(clash) == [(f"{root}/in/a.jpg", f"{root}/out/a.png")]
    assert settled_of(clash) == [(f"{root}/in/a.png", "failed",
                                  f"output clashes with the output of {root}/in/a.jpg")]
    onto = remote.plan([f"{root}/in/a.png"], f"{root}/in/a.png")
    assert settled_of(onto) == [(f"{root}/in/a.png", "failed", "the output would overwrite the input")]


def test_one_object_to_a_named_file_or_into_a_folder(bucket, tmp_path):
    root, put = bucket
    put("in/a.png")
    assert plan_of(remote.plan([f"{root}/in/a.png"], f"{root}/b.webp")) == [
        (f"{root}/in/a.png", f"{root}/b.webp")]
    assert plan_of(remote.plan([f"{root}/in/a.png"], f"{root}/out.d/")) == [
        (f"{root}/in/a.png", f"{root}/out.d/a.png")]
    local = remote.plan([f"{root}/in/a.png"], str(tmp_path / "here") + "/")
    assert [job.output for job in local.jobs] == [tmp_path / "here" / "a.png"]
    with pytest.raises(InvalidOptionError, match="unsupported output format '.txt'"):
        remote.plan([f"{root}/in/a.png"], f"{root}/b.txt")


def test_globs_mirror_the_names_below_their_first_wildcard(bucket):
    root, put = bucket
    put("scans/box1/1.tif", "scans/box2/2.tif", "scans/box2/notes.txt")
    batch = remote.plan([f"{root}/scans/*/*.tif"], f"{root}/out")
    assert plan_of(batch) == [(f"{root}/scans/box1/1.tif", f"{root}/out/box1/1.tif"),
                              (f"{root}/scans/box2/2.tif", f"{root}/out/box2/2.tif")]
    nothing = remote.plan([f"{root}/scans/*/*.png", f"{root}/scans/box1"], f"{root}/out")
    assert settled_of(nothing) == [(f"{root}/scans/*/*.png", "failed", "no files match")]


def test_a_missing_input_or_a_mix_of_local_and_store_inputs_is_a_usage_error(bucket, tmp_path):
    root, put = bucket
    put("in/a.png")
    with pytest.raises(InvalidOptionError, match=f"{root}/nothing: no such object or prefix"):
        remote.plan([f"{root}/in", f"{root}/nothing"], f"{root}/out")
    with pytest.raises(InvalidOptionError, match="not both"):
        remote.plan([f"{root}/in", str(tmp_path)], f"{root}/out")
    with pytest.raises(InvalidOptionError, match="'-'"):
        remote.plan([f"{root}/in"], "-")


def test_local_inputs_are_planned_by_plan_batch_into_the_store(bucket, tmp_path, gray_png):
    root, _ = bucket
    (gray_png.parent / "sub").mkdir()
    (gray_png.parent / "sub" / "b.png").write_bytes(gray_png.read_bytes())
    (gray_png.parent / "notes.txt").write_text("not an image")
    batch = remote.plan([str(gray_png.parent)], f"{root}/out", recursive=True, ext="tif")
    assert plan_of(batch) == [(str(gray_png), f"{root}/out/photo.tif"),
                              (str(gray_png.parent / "sub" / "b.png"), f"{root}/out/sub/b.tif")]
    assert [result.status for result in batch.settled] == ["skipped"]
    single = remote.plan([str(gray_png)], f"{root}/restored/photo.webp")
    assert plan_of(single) == [(str(gray_png), f"{root}/restored/photo.webp")]
    with pytest.raises(InvalidOptionError, match=f"{root}/restored/x.png: with several inputs"):
        remote.plan([str(gray_png.parent)], f"{root}/restored/x.png")


def test_local_and_file_urls_are_local_paths(tmp_path):
    assert remote.location(str(tmp_path)) == tmp_path
    assert remote.location(f"file://{tmp_path}") == tmp_path
    assert remote.location("s3://bucket/a b/c.png") == StorePath("s3", "bucket/a b/c.png")
    assert str(StorePath.parse("S3://bucket//scans/")) == "s3://bucket/scans"
    assert not remote.is_url("scans/a:b.png") and remote.is_url("gs://b/k")


def test_which_outputs_are_there_is_one_listing_per_folder(bucket):
    root, put = bucket
    put("out/a.png", "out/sub/b.png")
    outputs = [StorePath.parse(f"{root}/out/{name}") for name in ("a.png", "c.png", "sub/b.png")]
    assert remote.outputs_present(outputs) == {outputs[0], outputs[2]}
