"""MLPerf's calibration and sample lists as MLPerf publishes them: ids with labels, raw-file names
whose preprocessed sample is ``stem.npy``, nested paths, and nothing outside the data folder."""

import os

import numpy as np
import pytest

from mlperf_qx.calibration.model_inputs import ModelInput
from mlperf_qx.calibration.readers import open_calibration_set, open_samples_by_id
from mlperf_qx.calibration.sample_ids import ids_sha256, read_id_list, sample_key
from mlperf_qx.errors import UserInputError

IMAGE = [ModelInput("image", (None, 2), np.dtype(np.float32))]


def _write(folder, relative, value):
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.full((2,), value, np.float32))
    return path


def _values(calib):
    return [float(calib.sample(i)["image"][0, 0]) for i in calib.ids]


def test_option_2_lines_name_then_label(tmp_path):
    listing = tmp_path / "cal_image_list_option_2.txt"
    listing.write_text("ILSVRC2012_val_00031333.JPEG 0\nILSVRC2012_val_00004655.JPEG 1\n\n# a comment\n")
    assert read_id_list(listing, "--calib-list") == ["ILSVRC2012_val_00031333.JPEG", "ILSVRC2012_val_00004655.JPEG"]


@pytest.mark.parametrize("line", ["a b c", "name label"])
def test_malformed_lines_are_named(tmp_path, line):
    listing = tmp_path / "list.txt"
    listing.write_text(f"ok\n{line}\n")
    with pytest.raises(UserInputError, match=r"list.txt:2: expected"):
        read_id_list(listing, "--calib-list")


def test_jpeg_ids_find_their_stem_npy_and_the_old_form_still_works(tmp_path):
    data = tmp_path / "data"
    _write(data, "ILSVRC2012_val_00027145.npy", 1.0)
    _write(data, "ILSVRC2012_val_00042168.JPEG.npy", 2.0)
    listing = tmp_path / "cal_image_list_option_1.txt"
    listing.write_text("ILSVRC2012_val_00027145.JPEG\nILSVRC2012_val_00042168.JPEG\n")
    calib = open_calibration_set(data, IMAGE, listing)
    assert _values(calib) == [1.0, 2.0]


def test_nested_librispeech_paths(tmp_path):
    data = tmp_path / "data"
    _write(data, "train-clean-100-wav/103/1240/103-1240-0010.npy", 3.0)
    _write(data, "train-clean-100-wav/1034/121119/1034-121119-0071.npy", 4.0)
    listing = tmp_path / "calibration_files.txt"
    listing.write_text("train-clean-100-wav/103/1240/103-1240-0010.wav\n"
                       "train-clean-100-wav/1034/121119/1034-121119-0071.wav\n")
    calib = open_calibration_set(data, IMAGE, listing)
    assert calib.ids == ["train-clean-100-wav/103/1240/103-1240-0010", "train-clean-100-wav/1034/121119/1034-121119-0071"]
    assert _values(calib) == [3.0, 4.0]


@pytest.mark.parametrize("sample_id", ["../outside", "/etc/passwd", "a/../../outside"])
def test_ids_cannot_leave_the_data_folder(tmp_path, sample_id):
    data = tmp_path / "data"
    _write(data, "inside.npy", 1.0)
    _write(tmp_path, "outside.npy", 9.0)
    listing = tmp_path / "list.txt"
    listing.write_text(sample_id + "\n")
    with pytest.raises(UserInputError, match="relative path inside the data folder"):
        open_calibration_set(data, IMAGE, listing)


def test_symbolic_links_out_of_the_folder_are_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    secret = _write(tmp_path, "secret.npy", 9.0)
    os.symlink(secret, data / "linked.npy")
    listing = tmp_path / "list.txt"
    listing.write_text("linked\n")
    with pytest.raises(UserInputError, match="symbolic link"):
        open_calibration_set(data, IMAGE, listing)


def test_missing_ids_say_where_they_were_looked_for(tmp_path):
    data = tmp_path / "data"
    _write(data, "a.npy", 1.0)
    listing = tmp_path / "list.txt"
    listing.write_text("a\nb.JPEG\n")
    with pytest.raises(UserInputError, match=r"1 id\(s\) have no .npy/.npz sample .*b.JPEG"):
        open_samples_by_id(data, IMAGE, ["a", "b.JPEG"], listing)


def test_ids_fingerprint_ignores_the_list_layout():
    assert sample_key("X.JPEG") == sample_key("X.npy") == sample_key("X.JPEG.npy") == "X"
    assert sample_key("sub/dir/y.wav") == "sub/dir/y"
    assert ids_sha256(["X.JPEG", "Y.JPEG"]) == ids_sha256(["X", "Y.npy"]) != ids_sha256(["Y", "X"])


def test_samples_stacked_in_one_npz_are_listed_in_their_axis_order(tmp_path):
    """Twelve samples along axis 0: ids 0..11 in that order, not "0", "1", "10", "11", "2"...
    (the first ones check the written model, --holdout takes the last ones)."""
    import numpy as np

    from mlperf_qx.calibration.model_inputs import ModelInput
    from mlperf_qx.calibration.readers import open_calibration_set

    stacked = np.arange(12, dtype=np.float32).reshape(12, 1).repeat(2, axis=1)
    np.savez(tmp_path / "all.npz", x=stacked)
    calib = open_calibration_set(tmp_path / "all.npz", [ModelInput("x", (1, 2), np.dtype(np.float32))])
    assert calib.ids == [str(i) for i in range(12)]
    assert [float(calib.sample(i)["x"][0, 0]) for i in calib.ids] == list(range(12))
