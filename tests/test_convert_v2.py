"""``python -m paddle_googlenet.convert_v2``: legacy paddle.v2 archives into checkpoints, through the command line.

Archives are written by ``legacy_archive_writer`` (the legacy format and names, coded apart from the
converter) from random weights of this project's models; every conversion must give back exactly
the values written. Small class counts keep the archives small; VGG's fc1 alone is 102 M floats, so
the VGG round trip is marked slow and the other VGG depths are checked by their name tables.
"""

import gzip
import hashlib
import io
import json
import math
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from legacy_archive_writer import (archive_members, legacy_tensors, parameter_config, tensor_bytes, write_archive,
                                   write_members)
from paddle_googlenet import convert_v2, export, inference
from paddle_googlenet.checkpoint import build_model, load_checkpoint, read_record
from paddle_googlenet.data.transforms import LEGACY_FLOWERS_MEAN, build_eval_transform, legacy_preprocess, load_image
from paddle_googlenet.legacy_names import legacy_table, tensor_name
from paddle_googlenet.models import get_model, list_models
from paddle_googlenet.runtime import import_paddle

paddle = import_paddle()

PROG = "python -m paddle_googlenet.convert_v2"
REPO = Path(__file__).resolve().parents[1]
CLASSES = 5
LEGACY_RESNET18 = {"blocks": [2, 2, 2, 1]}
AUX_TENSORS = ("_conv_o1.", "_fc_o1.", "___fc_layer_1__.", "_conv_o2.", "_fc_o2.", "___fc_layer_2__.")


# Helpers ------------------------------------------------------------------------------------------

def convert(*argv):
    """Run the command in this process: ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = convert_v2.main([str(arg) for arg in argv])
    return code, out.getvalue(), err.getvalue()


def converted(archive, model, output, *flags):
    """Convert, expect success, return ``(checkpoint state, report)``."""
    code, out, err = convert(archive, model, "--output", output, *flags)
    assert code == 0, err
    return load_checkpoint(output), out


def random_state(model_name, classes=CLASSES, seed=0, **kwargs):
    """Random weights for a model of this project, at the scale of its initialisation so forwards stay finite;
    classifiers scaled down further (inputs are 0..255) so the softmax is not saturated; batch-norm
    statistics far from their initial 0 and 1."""
    with paddle.LazyGuard():
        model = get_model(model_name, num_classes=classes, **kwargs)
    rng, state = np.random.default_rng(seed), {}
    for key, value in model.state_dict().items():
        shape = tuple(value.shape)
        values = rng.standard_normal(shape, dtype=np.float32)
        if len(shape) == 4:
            values *= np.float32(math.sqrt(2 / math.prod(shape[1:])))
        elif len(shape) == 2:
            values *= np.float32(1 / math.sqrt(shape[0]) / (256 if shape[1] == classes else 1))
        elif key.endswith("_variance"):
            values = np.abs(values) + np.float32(0.5)
        else:
            values *= np.float32(0.1)
        state[key] = values
    return state


def assert_same_weights(state, expected):
    assert set(state["model"]) == set(expected)
    for key, values in expected.items():
        np.testing.assert_array_equal(state["model"][key], values, err_msg=key)


def renamed(tensors, renames):
    """Copies of ``tensors`` with the layers in ``renames`` (``{old layer: new layer}``) renamed."""
    copies = []
    for tensor in tensors:
        layer, suffix = tensor.name[1:].rsplit(".", 1)
        copies.append(replace(tensor, name=f"_{renames.get(layer, layer)}.{suffix}"))
    return copies


def legacy_input(path, mean=None, corrected=False):
    """What the legacy infer.py fed the network: paddle.v2.image.load_and_transform(path, 256, 224, False)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # load_image: BGR
    height, width = image.shape[:2]
    h_new, w_new = 256, 256  # resize_short(im, 256), Python 2 integer division
    if height > width:
        h_new = 256 * height // width
    else:
        w_new = 256 * width // height
    dsize = (w_new, h_new) if corrected else (h_new, w_new)  # the legacy passed (h, w) where OpenCV wants (w, h)
    image = cv2.resize(image, dsize, interpolation=cv2.INTER_CUBIC)
    height, width = image.shape[:2]
    top, left = (height - 224) // 2, (width - 224) // 2  # center_crop
    chw = image[top : top + 224, left : left + 224].transpose(2, 0, 1).astype("float32")  # to_chw
    if mean is not None:
        chw -= np.asarray(mean, np.float32)[:, np.newaxis, np.newaxis]
    return chw


def write_image(path, height, width, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows * 255 // height, cols * 255 // width, (rows + cols) * 127 // (height + width)], axis=-1)
    image = np.clip(image + rng.integers(0, 40, image.shape), 0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


# Fixtures -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def googlenet_state():
    return random_state("googlenet")


@pytest.fixture(scope="module")
def googlenet_tensors(googlenet_state):
    return legacy_tensors("googlenet", googlenet_state)


@pytest.fixture(scope="module")
def googlenet_archive(googlenet_tensors, tmp_path_factory):
    """As the legacy image-classification train.py saved it: gzip, the tar never closed."""
    return write_archive(tmp_path_factory.mktemp("legacy") / "params_pass_9.tar.gz", googlenet_tensors)


@pytest.fixture(scope="module")
def googlenet_tar(googlenet_tensors, tmp_path_factory):
    """The same tensors in a plain, unterminated tar (fast to write and read)."""
    return write_archive(tmp_path_factory.mktemp("legacy") / "params_pass_9.tar", googlenet_tensors, compress=False)


@pytest.fixture(scope="module")
def googlenet_converted(googlenet_archive, tmp_path_factory):
    """``(checkpoint path, report)`` of the plain conversion of ``googlenet_archive``."""
    output = tmp_path_factory.mktemp("converted") / "googlenet.pdckpt"
    _, report = converted(googlenet_archive, "googlenet", output)
    return output, report


@pytest.fixture(scope="module")
def resnet18_state():
    return random_state("resnet18", **LEGACY_RESNET18)


@pytest.fixture(scope="module")
def resnet50_state():
    return random_state("resnet50")


@pytest.fixture(scope="module")
def resnet50_tar(resnet50_state, tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("legacy") / "resnet50.tar", legacy_tensors("resnet50", resnet50_state),
                         compress=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Non-square images: a landscape PNG, a portrait PNG and a landscape JPEG."""
    folder = tmp_path_factory.mktemp("images")
    return [write_image(folder / "landscape.png", 300, 450), write_image(folder / "portrait.png", 400, 260, seed=1),
            write_image(folder / "photo.jpg", 333, 500, seed=2)]


# Round trips --------------------------------------------------------------------------------------

def test_googlenet_round_trip_is_exact_and_reported(googlenet_converted, googlenet_state, googlenet_archive):
    output, report = googlenet_converted
    state = load_checkpoint(output)
    assert_same_weights(state, googlenet_state)
    assert (state["model_name"], state["model_kwargs"]) == ("googlenet", {"num_classes": CLASSES})
    assert state["class_names"] == ["0", "1", "2", "3", "4"]
    assert state["preprocess"] == legacy_preprocess()
    origin = state["origin"]
    assert origin["sha256"] == hashlib.sha256(googlenet_archive.read_bytes()).hexdigest()
    assert (origin["archive_format"], origin["names"], origin["fresh"], origin["unused"]) == ("gzip", "exact", [], [])
    assert "gzip-compressed tar, 128 tensors" in report
    assert "5 classes, read from the classifier ___fc_layer_0__.w0 [1024, 5]" in report
    assert "names: exactly as the legacy model code names them" in report
    assert "loaded: 128 archive tensors into 128 of the 128 parameters of googlenet" in report
    assert ("BGR, values 0..255, no mean subtracted, short side to 256 bicubic with the legacy resize's width and "
            "height swapped") in report
    assert f"wrote {output}" in report
    assert "fresh:" not in report and "unused:" not in report and "note: 102 classes" not in report


@pytest.mark.parametrize("form", [
    dict(compress=False, closed=True, shuffle_seed=1),
    dict(compress=False, configs=False),
    dict(compress=True, shuffle_seed=2, packed_dims=True, configs="half"),
], ids=["plain-closed-shuffled", "plain-without-parameter-configs", "gzip-shuffled-packed-dims-half-configs"])
def test_archive_forms_convert_the_same(form, googlenet_tensors, googlenet_state, tmp_path):
    if form.get("configs") == "half":
        form = dict(form, configs={tensor.name for tensor in googlenet_tensors[::2]})
    archive = write_archive(tmp_path / "params.tar.gz", googlenet_tensors, **form)
    state, report = converted(archive, "googlenet", tmp_path / "out.pdckpt")
    assert_same_weights(state, googlenet_state)
    assert state["origin"]["archive_format"] == ("gzip" if form["compress"] else "tar")
    without = 128 if form.get("configs") is False else 64 if form.get("configs") else 0
    assert len(state["origin"]["without_parameter_config"]) == without
    assert (f"{without} without a ParameterConfig member" in report) == bool(without)


def test_googlenet_without_auxiliary_heads_gets_fresh_ones(googlenet_tensors, googlenet_state, tmp_path):
    main_path = [tensor for tensor in googlenet_tensors if not tensor.name.startswith(AUX_TENSORS)]
    assert len(main_path) == 116
    archive = write_archive(tmp_path / "params_pass_0.tar.gz", main_path, compress=False)
    state, report = converted(archive, "googlenet", tmp_path / "out.pdckpt")
    aux = sorted(key for key in googlenet_state if key.startswith("aux"))
    assert sorted(state["origin"]["fresh"]) == aux and len(aux) == 12
    for key, values in googlenet_state.items():
        if key in aux:
            assert state["model"][key].shape == values.shape and not np.array_equal(state["model"][key], values)
        else:
            np.testing.assert_array_equal(state["model"][key], values, err_msg=key)
    assert "fresh: the archive holds no auxiliary heads" in report and "12 parameters of aux1 and aux2" in report
    assert "loaded: 116 archive tensors into 116 of the 128 parameters" in report


def test_drifted_names_and_stray_layers_are_matched_by_creation_order(resnet18_state, tmp_path):
    """Counters shifted by layers the training script built first: a stray conv + batch norm and fcs of other sizes."""
    tensors = legacy_tensors("resnet18", resnet18_state, blocks=LEGACY_RESNET18["blocks"])
    shifted = {f"__conv_{k}__": f"__conv_{k + 1}__" for k in range(18)}
    shifted.update({f"__batch_norm_{k}__": f"__batch_norm_{k + 1}__" for k in range(18)})
    shifted["__fc_layer_0__"] = "__fc_layer_3__"
    rng = np.random.default_rng(5)
    stray = legacy_tensors("resnet18", {"stem.0.0.weight": rng.standard_normal((8, 3, 3, 3), dtype=np.float32),
                                        "stem.0.1.weight": np.ones(8, np.float32), "stem.0.1.bias": np.zeros(8, np.float32),
                                        "stem.0.1._mean": np.zeros(8, np.float32), "stem.0.1._variance": np.ones(8, np.float32),
                                        "fc.weight": rng.standard_normal((16, 4), dtype=np.float32),
                                        "fc.bias": np.zeros(4, np.float32)})
    stray = renamed(stray, {"__fc_layer_0__": "__fc_layer_1__"})  # ___conv_0__, ___batch_norm_0__, ___fc_layer_1__
    archive = write_archive(tmp_path / "params.tar", stray + renamed(tensors, shifted), compress=False, shuffle_seed=3)
    state, report = converted(archive, "resnet18", tmp_path / "out.pdckpt")
    assert_same_weights(state, resnet18_state)
    assert state["model_kwargs"] == {"num_classes": CLASSES, **LEGACY_RESNET18}
    assert state["origin"]["names"] == "creation order"
    assert sorted(state["origin"]["unused"]) == sorted(tensor.name for tensor in stray)
    assert "___conv_1__…___conv_18__ as ___conv_0__…___conv_17__ (18 layers)" in report
    assert "___fc_layer_3__ as ___fc_layer_0__" in report
    assert ("unused: 7 archive tensors placed nowhere, layers the training script built besides the model: "
            "___batch_norm_0__.{w0,w1,w2,wbias}, ___conv_0__.w0, ___fc_layer_1__.{w0,wbias}") in report


def test_legacy_resnet18_in_early_spellings_keeps_its_shape(resnet18_state, tmp_path):
    tensors = legacy_tensors("resnet18", resnet18_state, early=True, blocks=LEGACY_RESNET18["blocks"])
    assert tensors[0].name == "___img_conv_layer_0__.w0" and tensors[1].name == "___batch_norm_layer_0__.w0"
    state, report = converted(write_archive(tmp_path / "params.tar", tensors, compress=False), "resnet18",
                              tmp_path / "out.pdckpt")
    assert_same_weights(state, resnet18_state)
    assert state["origin"]["names"] == "early spellings"
    assert "resnet18 with blocks [2, 2, 2, 1] (18 conv+BN units" in report and "early paddle.v2 spellings" in report
    model = build_model(state)  # as infer.py and export rebuild it: the legacy shape, every block loaded
    assert [len(stage) for stage in model.stages] == [2, 2, 2, 1]


def test_resnet50_round_trip_keeps_batch_norm_statistics(resnet50_tar, resnet50_state, tmp_path):
    state, report = converted(resnet50_tar, "resnet50", tmp_path / "out.pdckpt")
    assert_same_weights(state, resnet50_state)
    moving = [key for key in resnet50_state if key.endswith(("_mean", "_variance"))]
    assert len(moving) == 106 and all(not np.all(resnet50_state[key] == 0) for key in moving)
    assert "resnet50 (53 conv+BN units, bottleneck blocks)" in report and "267 archive tensors" in report


def test_alexnet_round_trip_in_early_spellings_never_transposes_square_fc(tmp_path):
    """fc weights are [in, out] in the archive and in Paddle: the square fc2 [4096, 4096] must come back untransposed."""
    weights = random_state("alexnet")
    square = weights["classifier.fc2.fc.weight"]
    assert square.shape == (4096, 4096) and not np.array_equal(square, square.T)
    tensors = legacy_tensors("alexnet", weights, early=True)
    assert [t.name for t in tensors[:6:2]] == ["___img_conv_layer_0__.w0", "___img_conv_layer_1__.w0", "___conv_0__.w0"]
    state, report = converted(write_archive(tmp_path / "params.tar", tensors, compress=False), "alexnet",
                              tmp_path / "out.pdckpt")
    np.testing.assert_array_equal(state["model"]["classifier.fc2.fc.weight"], square)
    assert_same_weights(state, weights)
    assert "alexnet (5 convolutions, 3 fc layers), 5 classes" in report


@pytest.mark.slow  # 129 M values: a 520 MB archive and checkpoint, about 15 s; the other depths: the name tables below
def test_vgg13_round_trip(tmp_path):
    weights = random_state("vgg13")
    archive = write_archive(tmp_path / "params.tar", legacy_tensors("vgg13", weights), compress=False)
    state, report = converted(archive, "vgg13", tmp_path / "out.pdckpt")
    assert_same_weights(state, weights)
    assert "vgg13 (10 convolutions, 3 fc layers)" in report


@pytest.mark.parametrize("model_name, kwargs", [(name, {}) for name in list_models()] + [("resnet18", LEGACY_RESNET18)])
@pytest.mark.parametrize("early", [False, True], ids=["later", "early"])
def test_name_tables_follow_the_legacy_naming_rules(model_name, kwargs, early):
    """Every model's table of (legacy tensor, key, size) equals the writer's, which follows the legacy rules."""
    with paddle.LazyGuard():
        model = get_model(model_name, num_classes=7, **kwargs)
    shapes = {key: np.broadcast_to(np.float32(0), tuple(value.shape)) for key, value in model.state_dict().items()}
    expected = {t.name: (t.key, t.values.size) for t in legacy_tensors(model_name, shapes, early, kwargs.get("blocks"))}
    table = legacy_table(model_name, 7, **kwargs)
    found = {tensor_name(layer.spelled(early), p.suffix): (p.key, p.size) for layer in table.layers for p in layer.params}
    assert found == expected


# Preprocessing and inference ---------------------------------------------------------------------

@pytest.mark.parametrize("flags, mean, corrected", [
    ((), None, False),
    (("--mean", "flowers", "--corrected-resize"), LEGACY_FLOWERS_MEAN, True),
    (("--mean", "1.5", "2", "-3"), (1.5, 2.0, -3.0), False),
], ids=["legacy", "flowers-mean-corrected", "own-mean"])
def test_recorded_preprocessing_is_the_legacy_one(flags, mean, corrected, googlenet_tar, images, tmp_path):
    state, report = converted(googlenet_tar, "googlenet", tmp_path / "out.pdckpt", *flags)
    transform = build_eval_transform(read_record(state).preprocess)
    for path in images:
        expected = legacy_input(path, mean, corrected)
        np.testing.assert_array_equal(transform(load_image(path)), expected, err_msg=str(path))
        assert not np.array_equal(expected, legacy_input(path, mean, not corrected))  # the resize choice matters here
    assert ("keeping the aspect ratio (--corrected-resize)" in report) == corrected
    assert ("no mean subtracted" in report) == (mean is None)


def test_infer_and_export_give_the_legacy_predictions(googlenet_converted, googlenet_state, images, tmp_path, capsys):
    checkpoint, _ = googlenet_converted
    model = get_model("googlenet", num_classes=CLASSES)
    model.set_state_dict(googlenet_state)
    model.eval()
    photo = images[2]
    with paddle.no_grad():
        logits = model(paddle.to_tensor(legacy_input(photo)[np.newaxis])).numpy()[0]
    legacy = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert legacy.max() < 0.99  # not saturated: the order of the top 5 means something

    def predicted(model_path):
        capsys.readouterr()
        assert inference.main([str(model_path), str(photo), "--json", "--topk", "5"]) == 0
        topk = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["topk"]
        return [item["class_id"] for item in topk], np.array([item["prob"] for item in topk])

    ids, probs = predicted(checkpoint)
    assert ids == list(np.argsort(-legacy, kind="stable")[:5])
    np.testing.assert_allclose(probs, legacy[ids], atol=2e-6)
    assert export.main([str(checkpoint), "--output", str(tmp_path / "export"), "--onnx"]) == 0
    exported_ids, exported_probs = predicted(tmp_path / "export")
    assert exported_ids[0] == ids[0]
    np.testing.assert_allclose(exported_probs, legacy[exported_ids], atol=1e-4)
    onnx_probs = onnx_probabilities(tmp_path / "export", legacy_input(photo))  # the export's preprocessing is the legacy one
    np.testing.assert_allclose(onnx_probs, legacy, atol=1e-4)
    assert export.main([str(checkpoint), "--output", str(tmp_path / "int8"), "--int8", "--calibrate", *map(str, images)]) == 0
    int8_ids, int8_probs = predicted(tmp_path / "int8")
    assert sorted(int8_ids) == list(range(CLASSES))
    np.testing.assert_allclose(int8_probs, legacy[int8_ids], atol=0.15)  # int8 rounding, not another preprocessing


def onnx_probabilities(export_dir, chw):
    """The export's model.onnx run by ONNX Runtime on one preprocessed image."""
    runtime = pytest.importorskip("onnxruntime")
    session = runtime.InferenceSession(str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: chw[np.newaxis].astype(np.float32)})[0][0]


def test_labels_name_the_classes_and_102_classes_get_the_caveat(tmp_path):
    weights = random_state("resnet18", classes=102, **LEGACY_RESNET18)
    archive = write_archive(tmp_path / "params.tar", legacy_tensors("resnet18", weights, blocks=[2, 2, 2, 1]), compress=False)
    names = [f"flower {i}" for i in range(102)]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n\n")
    state, report = converted(archive, "resnet18", tmp_path / "out.pdckpt", "--labels", tmp_path / "labels.txt")
    assert state["class_names"] == names
    caveat = [line for line in report.splitlines() if line.startswith("note: 102 classes")]
    assert len(caveat) == 1 and "unit k is flower label k" in caveat[0] and "k+1" in caveat[0]


# Bad input: one line, exit code 2, nothing written ------------------------------------------------

def _members_with(googlenet_tensors, name, data=None, config=None):
    members = []
    for member, payload in archive_members(googlenet_tensors):
        if member == name and data is not None:
            payload = data
        if member == name + ".protobuf" and config is not None:
            payload = config
        members.append((member, payload))
    return members


def _bad_archive(case, tensors, tmp_path):
    """Write the archive of a bad-input case; return its path."""
    path = tmp_path / "params.tar"
    fc = tensors[114]
    assert fc.name == "___fc_layer_0__.w0"
    if case == "not-an-archive":
        path.write_bytes(b"these are not the weights you are looking for\n" * 40)
    elif case == "gzip-not-tar":
        path.write_bytes(gzip.compress(b"plain text, no tar inside\n" * 40))
    elif case == "truncated-gzip":
        whole = write_archive(tmp_path / "whole.tar.gz", tensors[:20])
        path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    elif case in ("header-format", "header-value-size"):
        header = (1, 4, fc.values.size) if case == "header-format" else (0, 8, fc.values.size)
        write_members(path, _members_with(tensors, fc.name, tensor_bytes(fc.values, header)), compress=False)
    elif case in ("short-tensor", "long-tensor"):
        data = tensor_bytes(fc.values)
        data = data[:-4] if case == "short-tensor" else data + b"\0\0\0\0"
        write_members(path, _members_with(tensors, fc.name, data), compress=False)
    elif case == "config-size":
        config = parameter_config(fc.name, fc.values.size + 1, fc.dims)
        write_members(path, _members_with(tensors, fc.name, config=config), compress=False)
    elif case == "fc-dims-transposed":
        config = parameter_config(fc.name, fc.values.size, fc.dims[::-1])
        write_members(path, _members_with(tensors, fc.name, config=config), compress=False)
    elif case == "size-fits-nothing":
        first = tensors[6]
        assert first.name == "_ince3a_1.w0"
        wrong = np.zeros(first.values.size + 1, np.float32)
        write_members(path, _members_with(tensors, first.name, tensor_bytes(wrong),
                                          parameter_config(first.name, wrong.size, [])), compress=False)
    elif case == "missing-tensors":
        kept = [t for t in tensors if t.name not in ("_ince4b_3.w0", "_ince5a_1.wbias")]
        write_archive(path, kept, compress=False)
    elif case == "ambiguous":
        main_path = [t for t in tensors if not t.name.startswith(AUX_TENSORS)]
        twin = renamed([t for t in main_path if "fc_layer" in t.name], {"__fc_layer_0__": "__fc_layer_4__"})
        write_archive(path, renamed(main_path, {"__fc_layer_0__": "__fc_layer_3__"}) + twin, compress=False)
    return path


BAD_ARCHIVES = {
    "not-an-archive": "neither a tar nor a gzip archive",
    "gzip-not-tar": "a gzip file that does not hold a tar archive",
    "truncated-gzip": "the gzip stream is truncated or corrupt",
    "header-format": "___fc_layer_0__.w0: header (1, 4, 5120) is not a paddle.v2 float32 parameter",
    "header-value-size": "___fc_layer_0__.w0: header (0, 8, 5120)",
    "short-tensor": "___fc_layer_0__.w0: short tensor: its header says 5120 values (20496 bytes with the header), "
                    "the member holds 20492 bytes",
    "long-tensor": "___fc_layer_0__.w0: long tensor",
    "config-size": "___fc_layer_0__.w0.protobuf says 5121 values, the tensor ___fc_layer_0__.w0 holds 5120",
    "fc-dims-transposed": "___fc_layer_0__.w0: its ParameterConfig says dims [5, 1024], i.e. [out, in]",
    "size-fits-nothing": "_ince3a_1.w0 holds 12,289 values where ince3a.conv1.conv.weight [64, 192, 1, 1] takes "
                         "12,288: it fits no parameter of googlenet",
    "missing-tensors": "the archive lacks 2 tensors that googlenet needs: _ince4b_3.w0, _ince5a_1.wbias",
    "ambiguous": "cannot tell which of the archive's 2 ___fc_layer_N__ layers are the 1 of googlenet",
}


def assert_refused(code, out, err, folder, expected):
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: "), err
    assert expected in lines[0], lines[0]
    assert not list(folder.glob("*.pdckpt")) and not list(folder.glob(".*.tmp"))


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_bad_archives_are_refused_in_one_line(case, googlenet_tensors, tmp_path):
    archive = _bad_archive(case, googlenet_tensors, tmp_path)
    output = tmp_path / "out" / "model.pdckpt"
    output.parent.mkdir()
    assert_refused(*convert(archive, "googlenet", "--output", output), output.parent, BAD_ARCHIVES[case])


def test_an_archive_of_another_model_is_named(resnet50_tar, resnet18_state, tmp_path):
    assert_refused(*convert(resnet50_tar, "vgg16", "--output", tmp_path / "out.pdckpt"), tmp_path,
                   "this archive holds a resnet50 (53 conv+BN units, bottleneck blocks), not vgg16; convert it with MODEL resnet50")
    tensors = legacy_tensors("resnet18", resnet18_state, blocks=LEGACY_RESNET18["blocks"])
    archive = write_archive(tmp_path / "resnet18.tar", tensors, compress=False)
    assert_refused(*convert(archive, "resnet34", "--output", tmp_path / "out.pdckpt"), tmp_path,
                   "this archive holds a resnet18 with blocks [2, 2, 2, 1] (18 conv+BN units, basic blocks), not resnet34")


@pytest.mark.parametrize("change, expected", [
    ("wrong-size", "___conv_5__.w0 holds 8,193 values where stages.1.0.shortcut.0.weight [128, 64, 1, 1] takes 8,192, and "
                   "no other alignment of the archive's 18 ___conv_N__ layers with the 18 of resnet18 with blocks [2, 2, 2, 1] fits"),
    ("no-stem", "the archive lacks 5 tensors that resnet18 with blocks [2, 2, 2, 1] needs: ___conv_0__.w0, "
                "___batch_norm_0__.w0, ___batch_norm_0__.w1, ___batch_norm_0__.w2 and 1 more"),
])
def test_counter_named_layers_that_do_not_fit_are_refused(change, expected, resnet18_state, tmp_path):
    tensors = legacy_tensors("resnet18", resnet18_state, blocks=LEGACY_RESNET18["blocks"])
    if change == "wrong-size":
        tensors = [replace(t, values=np.zeros(t.values.size + 1, np.float32), dims=[]) if t.name == "___conv_5__.w0" else t
                   for t in tensors]
    else:
        tensors = [t for t in tensors if t.name[1:].split(".")[0] not in ("__conv_0__", "__batch_norm_0__")]
    archive = write_archive(tmp_path / "params.tar", tensors, compress=False)
    assert_refused(*convert(archive, "resnet18", "--output", tmp_path / "out.pdckpt"), tmp_path, expected)


def test_batch_norm_statistics_must_be_static(resnet18_state, tmp_path):
    tensors = legacy_tensors("resnet18", resnet18_state, blocks=LEGACY_RESNET18["blocks"])
    for tensor in tensors:
        tensor.is_static = tensor.is_static and tensor.name != "___batch_norm_3__.w2"
    archive = write_archive(tmp_path / "params.tar", tensors, compress=False)
    assert_refused(*convert(archive, "resnet18", "--output", tmp_path / "out.pdckpt"), tmp_path,
                   "___batch_norm_3__.w2: its ParameterConfig is not static, but a batch norm's moving variance")


def test_an_existing_output_is_never_replaced_and_checked_first(googlenet_tar, tmp_path):
    output = tmp_path / "model.pdckpt"
    output.write_bytes(b"an earlier conversion")
    for archive in (googlenet_tar, tmp_path / "does-not-exist.tar.gz"):
        code, out, err = convert(archive, "googlenet", "--output", output)
        assert code == 2 and err.strip() == f"{PROG}: error: --output {output} exists already; choose another file name (it is never replaced)"
    assert output.read_bytes() == b"an earlier conversion" and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("option, expected", [
    ("--labels missing.txt", "labels file missing.txt does not exist"),
    ("--labels four.txt", "four.txt names 4 classes but the archive's classifier has 5 outputs"),
    ("--labels gap.txt", "gap.txt:2: empty class name"),
    ("--output model.ckpt", "a checkpoint file name ends in .pdckpt"),
    ("--output no/such/folder/model.pdckpt", "the folder no/such/folder does not exist"),
])
def test_bad_options_are_refused_in_one_line(option, expected, googlenet_tar, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("four.txt").write_text("a\nb\nc\nd\n")
    Path("gap.txt").write_text("a\n\nc\nd\ne\n")
    argv = [googlenet_tar, "googlenet", "--output", "out.pdckpt", *option.split()]
    assert_refused(*convert(*argv), tmp_path, expected)


@pytest.mark.parametrize("argv, expected", [
    (["params.tar", "MODEL-IS-WRONG", "--output", "o.pdckpt"], "argument MODEL: invalid choice: 'MODEL-IS-WRONG'"),
    (["params.tar", "googlenet", "--output", "o.pdckpt", "--mean", "1", "2"], "--mean takes three numbers B G R, or flowers; got 1 2"),
    (["params.tar", "googlenet"], "the following arguments are required: --output"),
])
def test_usage_errors_exit_2(argv, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = convert(*argv)
    assert code == 2 and err.strip().splitlines()[-1].startswith(f"{PROG}: error: ") and expected in err
    assert not list(tmp_path.iterdir())


def test_the_module_runs_as_a_command(tmp_path):
    (tmp_path / "params.tar.gz").write_bytes(b"\0" * 100)
    result = subprocess.run([sys.executable, "-m", "paddle_googlenet.convert_v2", "params.tar.gz", "googlenet",
                             "--output", "model.pdckpt"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: params.tar.gz: neither a tar nor a gzip archive")


# train.py with a converted checkpoint ---------------------------------------------------------------

def test_train_py_starts_from_a_converted_checkpoint_with_its_preprocessing(googlenet_converted, tmp_path, capsys):
    """--pretrained trains with the legacy preprocessing the weights expect; --eval-only evaluates with it;
    --resume is refused in one line (a converted checkpoint has no training state)."""
    from helpers import tiny_args, write_tiny_list_dataset
    from paddle_googlenet.training import main as train_main

    checkpoint, _ = googlenet_converted
    lists = write_tiny_list_dataset(tmp_path / "data", classes=CLASSES, per_class=4)
    capsys.readouterr()
    assert train_main(tiny_args(lists, tmp_path / "run", "--pretrained", checkpoint, "--lr", "1e-5", epochs=1)) == 0
    out = capsys.readouterr().out
    assert "pretrained: " in out and "preprocessing: the pretrained weights' own: BGR, pixels*1," in out
    trained = read_record(load_checkpoint(tmp_path / "run" / "latest.pdckpt")).preprocess
    assert trained == {**legacy_preprocess(), "image_size": 64, "resize_size": 73}  # the run's size, the legacy rest

    eval_args = [arg for arg in tiny_args(lists, "-", "--eval-only", checkpoint) if arg not in ("--output", "-")]
    assert train_main([*eval_args, "--output", str(tmp_path / "reports")]) == 0
    assert "on the validation split of list (5 images)" in capsys.readouterr().out

    assert train_main(tiny_args(lists, tmp_path / "resumed", "--resume", checkpoint, epochs=1)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds weights only" in err and f"--pretrained {checkpoint}" in err
