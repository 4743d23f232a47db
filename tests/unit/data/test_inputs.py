"""Output names derived from input paths (issue #21): safe, unique, inside the output folder."""
import os
from pathlib import Path, PurePath

from ssimae.data.inputs import NAME_BYTES, collect_inputs, output_names


def names(*paths, reserved=("thumbs",)):
    found = [(Path("in", p), PurePath(p).with_suffix("") if not p.startswith(".") else PurePath("_" + p))
             for p in paths]
    return [n.as_posix() for _, n in output_names(found, reserved)]


def test_unsafe_parts_are_replaced_and_nothing_leaves_the_folder():
    assert names("a\x1b[2J.png", "q?x.png", "c:d.png") == ["a_x1b[2J", "q_x", "c_d"]
    assert names(os.fsdecode(b"caf\xe9.png")) == ["caf_xe9"]
    for name in output_names([(Path("in/x.png"), PurePath(".")), (Path("in/y.png"), PurePath(".."))]):
        assert ".." not in name[1].parts and name[1].as_posix() not in (".", "")


def test_clashes_reserved_names_and_long_names_get_a_hash():
    a, b, t = names("a.png", "A.png", "thumbs/a.png")
    assert a == "a" and b.startswith("A-") and len(b) == 10 and t.startswith("thumbs-") and t.endswith("/a")
    (long,) = names("n" * 300 + ".png")
    assert len(long.encode()) <= NAME_BYTES and long.startswith("n" * 50)
    assert len(set(names("a.png", "a.jpg", "A.PNG"))) == 3


def test_collect_inputs_gives_each_file_a_safe_name(tmp_path):
    (tmp_path / "in" / "thumbs").mkdir(parents=True)
    for p in ("in/a.png", "in/thumbs/a.png", "in/..png"):
        (tmp_path / p).write_bytes(b"x")
    got = collect_inputs([tmp_path / "in", tmp_path / "in" / "..png"], reserved=("thumbs",))
    rel = {f.relative_to(tmp_path).as_posix(): n.as_posix() for f, n in got}
    assert rel["in/a.png"] == "a" and rel["in/thumbs/a.png"].startswith("thumbs-") and rel["in/..png"] == "_."
