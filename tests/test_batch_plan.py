"""Planning a batch (:mod:`formnet_cli.batch.plan`): inputs, folders, globs, links, clashes,
missing paths, the dry run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from cli_helpers import invoke, restore
from formnet_cli.batch import plan as batch_plan
from formnet_cli.errors import InvalidOptionError


def test_among_several_files_one_of_a_type_not_read_is_skipped(tiny_models, tmp_path, gray_png):
    # What a shell's scans/* gives: a Thumbs.db among the images must not fail the batch.
    thumbs = tmp_path / "in" / "Thumbs.db"
    thumbs.write_bytes(b"\0" * 16)
    result = restore(tiny_models.denoise_gray, gray_png, thumbs, "-o", tmp_path / "out", "--sigma", "5")
    assert result.exit_code == 0, result.output
    assert "restored 1, skipped 1, failed 0" in result.stdout
    assert f"skipped {thumbs}: '.db' files are not read" in result.stderr


@pytest.mark.parametrize("name", ["anim.gif", "scan"])
def test_a_file_named_alone_of_a_type_not_read_fails(tiny_models, tmp_path, name):
    # Found in a folder it is skipped; named on the command line, the user asked for it.
    source = tmp_path / name
    Image.new("L", (8, 8)).save(source, format="GIF" if name.endswith(".gif") else "PNG")
    result = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.png", "--sigma", "5")
    assert result.exit_code == 1, result.output
    assert "restored 0, skipped 0, failed 1" in result.stdout
    reason = "'.gif' files are not read" if name.endswith(".gif") else "files without an extension"
    assert f"failed: {source}: {reason}" in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_links_are_planned_once_under_their_own_name_and_noted(tiny_models, tmp_path,
                                                                random_image, write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((8, 8), np.uint8))
    write_png(scans / "sub" / "b.png", random_image((8, 8), np.uint8, seed=1))
    (scans / "link.png").symlink_to("a.png")
    (scans / "linkdir").symlink_to("sub")
    (scans / "dangling.png").symlink_to("nothing.png")
    result = restore(tiny_models.denoise_gray, scans, "-o", tmp_path / "out", "-r", "--sigma", "5")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "a.png", "sub/b.png"]
    assert "restored 2, skipped 3, failed 0" in result.stdout  # each link counted as skipped
    notes = " ".join(result.stderr.split())
    assert f"skipped {scans / 'link.png'}: the same file as {scans / 'a.png'}" in notes
    assert f"skipped {scans / 'dangling.png'}: a link to nothing" in notes
    assert f"skipped {scans / 'linkdir'}: a link to a folder (not followed)" in notes
    globbed = restore(tiny_models.denoise_gray, f"{scans}/**/*.png", "-o", tmp_path / "globbed",
                      "-r", "--sigma", "5")
    assert globbed.exit_code == 0, globbed.output  # sub/b.png under its own name, not linkdir/
    assert sorted(p.relative_to(tmp_path / "globbed").as_posix()
                  for p in (tmp_path / "globbed").rglob("*.png")) == ["a.png", "sub/b.png"]


def test_dry_run_lists_what_would_be_written_and_writes_nothing(tiny_models, tmp_path,
                                                                random_image, write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((8, 8), np.uint8))
    write_png(scans / "sub" / "b.png", random_image((8, 8), np.uint8))
    output = tmp_path / "out"
    write_png(output / "a.tif", random_image((8, 8), np.uint8))  # exists: would be left as is
    result = restore(tiny_models.denoise_gray, scans, "-o", output, "-r", "--ext", "tif",
                     "--skip-existing", "--sigma", "5", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{scans / 'sub' / 'b.png'} -> {output / 'sub' / 'b.tif'}",
                                          f"{scans / 'a.png'} -> {output / 'a.tif'} (exists: left as it is)",
                                          "would restore 1, skip 1; failed 0"]
    assert sorted(p.name for p in output.rglob("*")) == ["a.tif"]  # nothing written, no folder made
    as_json = json.loads(restore(tiny_models.denoise_gray, scans, "-o", output, "-r", "--sigma", "5",
                                 "-n", "--json").stdout)
    assert as_json["dry_run"] and as_json["planned"] == 2 and as_json["done"] == 0
    assert {f["status"] for f in as_json["files"]} == {"planned"}
    refused = restore(tiny_models.denoise_gray, scans, "-o", output, "--sigma", "99", "--dry-run")
    assert refused.exit_code == 2 and "sigma" in refused.stderr  # options are checked too
    unknown = invoke("restore", scans, "-o", output, "--model", "bogus", "--sigma", "5", "-n")
    assert unknown.exit_code == 2 and "unknown model 'bogus'" in unknown.stderr  # and the model
    blocked = restore(tiny_models.denoise_gray, scans, "-o", scans / "a.png" / "out", "-r",
                      "--sigma", "5", "-n")  # and the output folders
    assert blocked.exit_code == 1 and f"{scans / 'a.png'} is a file" in blocked.stderr


def test_a_glob_does_not_restore_earlier_outputs_inside_the_output_folder(
        tiny_models, tmp_path, random_image, write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((8, 8), np.uint8))
    write_png(scans / "restored" / "a.png", random_image((8, 8), np.uint8))  # an earlier run's
    result = restore(tiny_models.denoise_gray, f"{scans}/*", "-o", scans / "restored", "-r",
                     "--sigma", "5", "-n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:-1] == [f"{scans / 'a.png'} -> {scans / 'restored' / 'a.png'}"]


@pytest.mark.parametrize("glob", [False, True])
def test_an_output_folder_at_or_above_the_inputs_hides_none_of_them(
        tiny_models, tmp_path, random_image, write_png, monkeypatch, glob):
    # 'raw/*.png' -o raw --ext jpg, or raw -o . : the inputs are not earlier outputs.
    write_png(tmp_path / "raw" / "a.png", random_image((8, 8), np.uint8))
    monkeypatch.chdir(tmp_path)
    source = "raw/*.png" if glob else "raw"
    result = restore(tiny_models.denoise_gray, source, "-o", "raw" if glob else ".", "--ext", "jpg",
                     "--sigma", "5", "-n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == ("raw/a.png -> raw/a.jpg" if glob else "raw/a.png -> a.jpg")


def test_without_recursive_subfolders_are_not_entered(tiny_models, tmp_path, random_image,
                                                       write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((8, 8), np.uint8))
    write_png(scans / "sub" / "b.png", random_image((8, 8), np.uint8))
    result = restore(tiny_models.denoise_gray, scans, "-o", tmp_path / "out", "--sigma", "5",
                     "--ext", "tif")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["a.tif"]
    assert "--recursive" in result.stderr


def test_output_folder_inside_the_input_folder_is_not_restored_again(
        tiny_models, tmp_path, random_image, write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((8, 8), np.uint8))
    for _ in range(2):
        result = restore(tiny_models.denoise_gray, scans, "-o", scans / "restored", "-r",
                         "--sigma", "5", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["done"] == 1
    assert sorted(p.relative_to(scans).as_posix() for p in scans.rglob("*.png")) == [
        "a.png", "restored/a.png"]


def test_output_folder_that_is_the_input_folder_is_refused(tiny_models, tmp_path, random_image,
                                                            write_png):
    original = write_png(tmp_path / "scans" / "a.png", random_image((8, 8), np.uint8)).read_bytes()
    result = restore(tiny_models.denoise_gray, tmp_path / "scans", "-o", tmp_path / "scans", "--sigma", "5")
    assert result.exit_code == 2
    assert "the output folder is the input folder" in result.stderr and "scans/restored" in result.stderr
    assert (tmp_path / "scans" / "a.png").read_bytes() == original


@pytest.mark.parametrize(("pattern", "flags"), [("scans/**/*.png", ["-r"]), ("scans/*/*.png", []),
                                               ("scans/*", []), ("scans/**/*.png", [])])
def test_glob_matches_mirror_the_folders_below_the_wildcard(tiny_models, tmp_path, random_image,
                                                            write_png, monkeypatch, pattern, flags):
    for box in ("box1", "box2"):  # the same file names in two folders must not clash
        write_png(tmp_path / "scans" / box / "0001.png", random_image((8, 8), np.uint8))
    monkeypatch.chdir(tmp_path)
    result = restore(tiny_models.denoise_gray, pattern, "-o", "out", *flags, "--sigma", "5")
    assert result.exit_code == 0, result.output
    assert ("without --recursive" in result.stderr) == ("**" in pattern and not flags)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "box1/0001.png", "box2/0001.png"]


def test_clashing_outputs_and_bad_output_names(tiny_models, tmp_path, random_image, write_png):
    first = write_png(tmp_path / "x" / "a.png", random_image((8, 8), np.uint8))
    second = write_png(tmp_path / "y" / "a.png", random_image((8, 8), np.uint8))
    result = restore(tiny_models.denoise_gray, first, second, "-o", tmp_path / "out",
                     "--sigma", "5", "--json")
    assert result.exit_code == 1
    reasons = [entry["reason"] for entry in json.loads(result.stdout)["files"]]
    assert any("clashes" in reason for reason in reasons)
    result = restore(tiny_models.denoise_gray, first, "-o", tmp_path / "a.xyz", "--sigma", "5")
    assert result.exit_code == 2 and "unsupported output format" in result.stderr
    result = restore(tiny_models.denoise_gray, first, second, "-o", tmp_path / "b.png")
    assert result.exit_code == 2 and "must be a folder" in result.stderr


@pytest.mark.parametrize("others", [[], ["{png}"], ["{png}", "{tmp}/*.png"]])
def test_a_missing_input_is_a_usage_error_before_any_work(tiny_models, tmp_path, gray_png, monkeypatch,
                                                         others):
    # A mistyped name: said at once (exit 2), alone or among inputs that exist, before the
    # model loads or any folder is made; as a traceback with FORMNET_DEBUG=1, with the same code.
    missing = tmp_path / "nothere.png"
    arguments = [missing, *(other.format(png=gray_png, tmp=tmp_path) for other in others)]
    loads = []
    monkeypatch.setattr("formnet_cli.api.load_model", lambda *a, **k: loads.append(a))
    result = restore(tiny_models.denoise_gray, *arguments, "-o", tmp_path / "out" / "o.png",
                     "--sigma", "5", "--json")
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"error: {missing}: no such file or directory "
                             "(see 'formnet restore -h')\n")
    assert result.stdout == "" and loads == [] and not (tmp_path / "out").exists()
    monkeypatch.setenv("FORMNET_DEBUG", "1")
    debugged = restore(tiny_models.denoise_gray, *arguments, "-o", tmp_path / "out" / "o.png")
    assert debugged.exit_code == 2 and "Traceback" in debugged.stderr
    assert f"InvalidOptionError: {missing}: no such file or directory" in debugged.stderr


def test_every_missing_input_is_named(tmp_path, gray_png):
    with pytest.raises(InvalidOptionError) as refused:
        batch_plan.plan_batch([tmp_path / "a.png", gray_png, tmp_path / "b.png"], tmp_path / "out")
    assert str(refused.value) == f"{tmp_path / 'a.png'}, {tmp_path / 'b.png'}: no such file or directory"
    plan = batch_plan.plan_batch([str(tmp_path / "*.tif"), gray_png], tmp_path / "out")
    assert [(r.input.name, r.reason) for r in plan.settled] == [("*.tif", "no files match")]  # a pattern


def test_folder_output_that_is_a_file_fails_before_any_work(tiny_models, tmp_path, gray_png):
    occupied = tmp_path / "occupied"
    occupied.write_text("not a folder")
    result = restore(tiny_models.denoise_gray, gray_png.parent, "-o", occupied, "--sigma", "5")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "not a folder" in result.stderr
    assert occupied.read_text() == "not a folder"


def test_empty_folder_and_misplaced_ext_are_one_line_errors(tiny_models, tmp_path, gray_png):
    (tmp_path / "empty").mkdir()
    result = restore(tiny_models.denoise_gray, tmp_path / "empty", "-o", tmp_path / "out")
    assert result.exit_code == 2 and result.stderr.startswith("error: no files to restore in ")
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "o.png", "--ext", "jpg")
    assert result.exit_code == 2 and "--ext applies to folder outputs" in result.stderr
    assert not (tmp_path / "o.png").exists()
    same = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "o.tif", "--ext", "tiff",
                   "--sigma", "5")
    assert same.exit_code == 0, same.output  # .tif and tiff name one format


@pytest.mark.parametrize("order", [("a.jpg", "a.png"), ("a.png", "a.jpg")])
def test_no_output_replaces_another_input(tmp_path, random_image, write_png, order, tiny_models):
    png = write_png(tmp_path / "a.png", random_image((8, 8), np.uint8))
    Image.fromarray(random_image((8, 8), np.uint8, seed=1)).save(tmp_path / "a.jpg")
    before = png.read_bytes()
    with pytest.raises(InvalidOptionError) as refused:  # a usage error, before any work
        batch_plan.plan_batch([tmp_path / name for name in order], tmp_path, ext="png")
    assert str(refused.value) == (f"{tmp_path / 'a.png'}: the output would overwrite the input; "
                                  "choose another -o")
    jpeg = (tmp_path / "a.jpg").read_bytes()
    itself = restore(tiny_models.denoise_gray, tmp_path / "a.jpg", "-o", tmp_path / "a.jpg")
    assert itself.exit_code == 2 and itself.stderr == (
        f"error: {tmp_path / 'a.jpg'}: the output would overwrite the input; choose another -o "
        "(see 'formnet restore -h')\n")
    assert (tmp_path / "a.jpg").read_bytes() == jpeg
    one = restore(tiny_models.denoise_gray, tmp_path / "a.jpg", tmp_path / "a.png", "-o", tmp_path,
                  "--ext", "png")
    assert one.exit_code == 2 and "would overwrite the input" in one.stderr
    assert png.read_bytes() == before


def test_a_recursive_glob_does_not_follow_links_to_folders(tmp_path, random_image, write_png):
    write_png(tmp_path / "g" / "a" / "x.png", random_image((8, 8), np.uint8))
    write_png(tmp_path / "g" / "a" / "b" / "y.png", random_image((8, 8), np.uint8, seed=1))
    (tmp_path / "g" / "a" / "b" / "up").symlink_to("..")  # loops: glob.glob would run for ever
    (tmp_path / "g" / "a" / "up2").symlink_to("..")
    plan = batch_plan.plan_batch([str(tmp_path / "g" / "**" / "*.png")], tmp_path / "out", recursive=True)
    assert sorted(job.output.relative_to(tmp_path / "out").as_posix() for job in plan.jobs) == ["a/b/y.png", "a/x.png"]


def test_fifos_and_dangling_links_are_named_not_dropped(tmp_path, random_image, write_png):
    folder = tmp_path / "t"
    write_png(folder / "ok.png", random_image((8, 8), np.uint8))
    os.mkfifo(folder / "fifo.png")
    (folder / "broken.png").symlink_to("nowhere.png")
    for inputs in ([folder], [str(folder / "*.png")]):
        plan = batch_plan.plan_batch(inputs, tmp_path / "out")
        assert [job.input.name for job in plan.jobs] == ["ok.png"]
        assert {result.input.name: result.reason for result in plan.settled} == {
            "fifo.png": "a FIFO, not an image file", "broken.png": "a link to nothing"}
    alone = batch_plan.plan_batch([folder / "fifo.png"], tmp_path / "o.png")
    assert [(result.status, result.reason) for result in alone.settled] == [("failed", "a FIFO, not an image file")]


def test_a_file_met_twice_with_a_clashing_output_fails_once(tmp_path, random_image, write_png):
    write_png(tmp_path / "dup" / "b.PNG", random_image((8, 8), np.uint8))
    write_png(tmp_path / "dup" / "b.png", random_image((8, 8), np.uint8, seed=1))
    plan = batch_plan.plan_batch([tmp_path / "dup", str(tmp_path / "dup" / "*.png")], tmp_path / "out", ext="png")
    assert [job.input.name for job in plan.jobs] == ["b.PNG"]
    assert [(result.input.name, result.status) for result in plan.settled] == [("b.png", "failed")]


def test_a_recursive_glob_enters_hidden_folders_only_by_name(tmp_path, random_image, write_png):
    for name in (".dot.png", "a/.q.png", ".hid/.k.png", ".git/objects/.pack.png", "a/x.png"):
        write_png(tmp_path / "in" / name, random_image((8, 8), np.uint8))
    hidden = batch_plan.plan_batch([str(tmp_path / "in" / "**" / ".*.png")], tmp_path / "out", recursive=True)
    assert sorted(job.input.relative_to(tmp_path / "in").as_posix() for job in hidden.jobs) == [".dot.png", "a/.q.png"]
    named = batch_plan.plan_batch([str(tmp_path / "in" / ".hid" / "**" / "*.png")], tmp_path / "out2", recursive=True)
    assert named.jobs == [] and [r.reason for r in named.settled] == ["no files match"]  # .k.png is hidden


def test_outputs_differing_only_in_case_clash_where_the_output_ignores_case(tmp_path, random_image,
                                                                           write_png, monkeypatch):
    write_png(tmp_path / "in" / "A.png", random_image((8, 8), np.uint8))
    write_png(tmp_path / "in" / "a.png", random_image((8, 8), np.uint8, seed=1))
    assert len(batch_plan.plan_batch([tmp_path / "in"], tmp_path / "out").jobs) == 2  # this file system: two files
    monkeypatch.setattr(batch_plan, "_ignores_case", lambda folder: True)  # an exFAT or NTFS drive
    plan = batch_plan.plan_batch([tmp_path / "in"], tmp_path / "out")
    assert [job.input.name for job in plan.jobs] == ["A.png"]
    assert [(r.input.name, r.reason) for r in plan.settled] == [
        ("a.png", f"output clashes with the output of {tmp_path / 'in' / 'A.png'}")]


def test_the_case_probe_only_looks(tmp_path):
    (tmp_path / "Scan.png").write_bytes(b"x")
    (tmp_path / "sCAN.PNG").write_bytes(b"y")  # a different file here: the case tells them apart
    assert batch_plan._folder_ignores_case(tmp_path) is False  # this project's file systems tell case
    assert sorted(path.name for path in tmp_path.iterdir()) == ["Scan.png", "sCAN.PNG"]  # nothing written
    assert batch_plan._ignores_case(tmp_path / ("x" * 300) / "deeper") is False  # an over-long name: no error


def test_hidden_images_in_a_folder_are_listed_as_skipped(tiny_models, tmp_path, random_image,
                                                         write_png):
    folder = tmp_path / "in"
    write_png(folder / "a.png", random_image((8, 8), np.uint8))
    write_png(folder / ".hidden.png", random_image((8, 8), np.uint8, seed=1))
    write_png(folder / ".thumbnails" / "a.png", random_image((8, 8), np.uint8, seed=2))
    (folder / ".DS_Store").write_bytes(b"\0" * 8)  # hidden and no image: not worth a line
    result = restore(tiny_models.denoise_gray, folder, "-o", tmp_path / "out", "--sigma", "5",
                     "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["skipped"]) == (1, 1)
    [skipped] = [entry for entry in summary["files"] if entry["status"] == "skipped"]
    assert skipped["input"] == str(folder / ".hidden.png")
    assert skipped["reason"] == "a hidden file (its name starts with '.')"
    assert f"skipped {folder / '.hidden.png'}: a hidden file" in result.stderr


def test_a_link_loop_is_called_a_loop(tmp_path, random_image, write_png):
    folder = tmp_path / "t"
    write_png(folder / "ok.png", random_image((8, 8), np.uint8))
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "a.png").symlink_to("b.png")
    (folder / "b.png").symlink_to("a.png")
    plan = batch_plan.plan_batch([folder], tmp_path / "out")
    assert {result.input.name: result.reason for result in plan.settled} == {
        name: "a link loop (its links lead back to themselves)" for name in ("loop.png", "a.png", "b.png")}


def test_without_output_each_result_goes_beside_its_input(tiny_models, tmp_path, random_image,
                                                         write_png):
    photo = write_png(tmp_path / "in" / "photo.png", random_image((16, 16), np.uint8))
    write_png(tmp_path / "in" / "sub" / "scan.png", random_image((16, 16), np.uint8, seed=1))
    before = photo.read_bytes()
    one = restore(tiny_models.denoise_gray, photo, "--sigma", "5")
    assert one.exit_code == 0, one.output
    assert (tmp_path / "in" / "photo_restored.png").is_file() and photo.read_bytes() == before
    # a folder, again: the earlier output is not an input; --recursive mirrors beside each
    listed = restore(tiny_models.denoise_gray, tmp_path / "in", "-r", "--sigma", "5", "--dry-run",
                     "--json")
    planned = [(entry["input"], entry["output"]) for entry in json.loads(listed.stdout)["files"]]
    assert planned == [
        (str(photo), str(tmp_path / "in" / "photo_restored.png")),
        (str(tmp_path / "in" / "sub" / "scan.png"), str(tmp_path / "in" / "sub" / "scan_restored.png"))]
    glob = restore(tiny_models.denoise_gray, f"{tmp_path / 'in'}/*.png", "--suffix", "-clean",
                   "--ext", "jpg", "--sigma", "5")
    assert glob.exit_code == 0, glob.output
    assert sorted(path.name for path in (tmp_path / "in").iterdir()) == [  # the suffix in use
        "photo-clean.jpg", "photo.png", "photo_restored-clean.jpg", "photo_restored.png", "sub"]


@pytest.mark.parametrize("suffix", ["", ".", "/x", "a/b"])
def test_a_suffix_that_is_not_part_of_a_name_is_a_usage_error(tmp_path, gray_png, suffix):
    result = invoke("restore", gray_png, "--suffix", suffix)
    assert result.exit_code == 2
    assert f"--suffix must be a part of a file name (such as _restored), got {suffix!r}" in result.stderr
    assert sorted(path.name for path in gray_png.parent.iterdir()) == ["photo.png"]


def test_standard_input_needs_an_output(gray_png):
    result = invoke("restore", "-", input=gray_png.read_bytes())
    assert result.exit_code == 2 and "an image on standard input needs -o" in result.stderr
