"""Discovery, decoding, EXIF orientation, guards and error reasons (Pillow only)."""
from __future__ import annotations

import hashlib

from PIL import Image

from vfr.describe import reader
from vfr.describe.reader import ImageRef, ReaderLimits, ReadError, discover, read
from tests.describe_helpers import FORMATS, make_bad_files, make_images


def test_discover_folders_globs_lists_once(tmp_path):
    imgs = make_images(tmp_path / "a" / "b", 3)
    (tmp_path / "a" / "notes.txt").write_text("x")
    found = list(discover([tmp_path / "a"]))
    assert found == sorted(imgs)                         # recursive, image suffixes only, stable order
    lst = tmp_path / "list.txt"
    lst.write_text(f"# my list\n{imgs[0]}\n\n{imgs[1]}\n")
    again = list(discover([f"@{lst}", str(tmp_path / "a" / "b" / "*.png"), imgs[0], tmp_path / "a"]))
    assert sorted(again) == sorted(imgs)                  # each path once
    assert list(discover([tmp_path / "a" / "notes.txt"])) == [tmp_path / "a" / "notes.txt"]  # named: tried
    assert list(discover([tmp_path / "missing.jpg"])) == [tmp_path / "missing.jpg"]


def test_every_format_decodes_to_rgb_with_sha256_id(tmp_path):
    paths = make_images(tmp_path, len(FORMATS), sizes=[(120, 80)])
    for p in paths:
        ref = read(p)
        assert isinstance(ref, ImageRef), (p, ref)
        assert ref.id == hashlib.sha256(p.read_bytes()).hexdigest()
        assert ref.image.mode == "RGB" and (ref.width, ref.height) == (120, 80) == ref.image.size
        assert ref.size == p.stat().st_size


def test_gif_first_frame_and_transparency_on_white(tmp_path):
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "blue", "green")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    ref = read(tmp_path / "anim.gif")
    r, g, b = ref.image.getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert read(tmp_path / "clear.png").image.getpixel((3, 3)) == (255, 255, 255)


def test_exif_orientation_applied(tmp_path):
    im = Image.new("RGB", (200, 100), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    ref = read(tmp_path / "rot.jpg")
    assert (ref.width, ref.height) == (100, 200)
    assert ref.image.size == (100, 200)


def test_downscale_to_pixel_budget_keeps_aspect(tmp_path):
    Image.new("RGB", (2000, 1000), "blue").save(tmp_path / "big.jpg", quality=80)
    Image.new("RGB", (1600, 800), "blue").save(tmp_path / "big.png")
    for name in ("big.jpg", "big.png"):
        ref = read(tmp_path / name, ReaderLimits(max_pixels=224 * 224))
        w, h = ref.image.size
        assert w * h <= 224 * 224 and abs(w / h - 2) < 0.05
        assert ref.width in (2000, 1600)  # the original size is what gets stored


def test_bad_files_become_reasons(tmp_path):
    good = make_images(tmp_path / "ok", 2, sizes=[(300, 200)])[1]  # a PNG
    expected = make_bad_files(tmp_path / "bad", good)
    for name, reason in expected.items():
        got = read(tmp_path / "bad" / name)
        assert isinstance(got, ReadError) and got.reason == reason, (name, got)
    missing = read(tmp_path / "nope.jpg")
    assert missing.reason == reader.UNREADABLE and missing.image_id is None


def test_guards_refuse_oversized_and_bombs(tmp_path):
    Image.new("RGB", (500, 400), "white").save(tmp_path / "a.png")
    assert read(tmp_path / "a.png", ReaderLimits(max_file_bytes=10)).reason == reader.TOO_LARGE
    assert read(tmp_path / "a.png", ReaderLimits(max_decode_pixels=1000)).reason == reader.BOMB
    Image.new("RGB", (16, 16)).save(tmp_path / "x.ico")
    assert read(tmp_path / "x.ico").reason == reader.UNSUPPORTED


def test_unlistable_subfolder_becomes_an_error_row_not_a_silent_gap(tmp_path, monkeypatch):
    """os.walk skips folders it cannot list; the job must count them instead of losing their images."""
    import os

    imgs = make_images(tmp_path / "a", 2)
    locked = tmp_path / "a" / "locked"
    make_images(locked, 1)
    real = os.scandir

    def scandir(path="."):   # what a folder without read permission gives (also when running as root)
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    found = list(discover([tmp_path / "a"]))
    assert sorted(found) == sorted([*imgs, locked])
    err = reader.read_bytes(locked, ReaderLimits())
    assert isinstance(err, ReadError) and err.reason == reader.UNREADABLE
    assert err.detail == "folder could not be listed: PermissionError: Permission denied"
