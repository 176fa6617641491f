"""infer.py and export: the exported model predicts what the checkpoint predicts; inputs, output formats, errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paddle_googlenet import export, exported
from paddle_googlenet.data.folder import read_image_folders
from paddle_googlenet.data.lists import SHOWN_ERRORS, read_list_file
from paddle_googlenet.data.transforms import build_eval_transform, load_image
from paddle_googlenet.inference import (
    CheckpointPredictor,
    ExportedPredictor,
    collect_images,
    cpu_has_fast_bfloat16,
    main,
)
from paddle_googlenet.training import main as train_main

from helpers import CLASS_NAMES, REPO


@pytest.fixture(scope="session")
def ema_checkpoint(tiny_lists, tmp_path_factory):
    """A checkpoint of a run that kept a moving average of its weights and chose its best by it."""
    train_list, val_list = tiny_lists
    output = tmp_path_factory.mktemp("ema_run")
    argv = ["googlenet", "--dataset", "list", "--train-list", str(train_list), "--val-list", str(val_list),
            "--image-size", "64", "--batch-size", "6", "--epochs", "1", "--workers", "0", "--output", str(output),
            "--ema", "0.5", "--best-of", "ema"]
    assert train_main(argv) == 0
    return output / "latest.pdckpt"


@pytest.fixture(scope="session")
def export_dir(checkpoint, tmp_path_factory):
    return export.export_checkpoint(checkpoint, tmp_path_factory.mktemp("export") / "googlenet")


@pytest.fixture(scope="session")
def int8_export_dir(checkpoint, tiny_lists, tmp_path_factory):
    """The checkpoint exported as int8, calibrated on the training list (18 images) given as --calibrate."""
    output = tmp_path_factory.mktemp("export_int8") / "googlenet"
    return export.export_checkpoint(checkpoint, output, int8=True, calibrate=[tiny_lists[0]])


@pytest.fixture(scope="session")
def images(tiny_lists):
    return sorted(str(p) for p in tiny_lists[0].parent.glob("*.png"))


@pytest.fixture(scope="session")
def reference_probs(checkpoint, images):
    """The checkpoint's probabilities (dygraph, float32) for every tiny image."""
    predictor = CheckpointPredictor(checkpoint, device="cpu")
    return predictor.predict(preprocess(predictor, images))


def preprocess(predictor, paths):
    transform = build_eval_transform(predictor.preprocess)
    return np.stack([transform(load_image(path)) for path in paths])


def top1_agreement(probs, reference, min_margin):
    """Share of images whose top-1 matches, among those the reference ranks with at least ``min_margin``."""
    ranked = np.sort(reference, axis=1)
    clear = ranked[:, -1] - ranked[:, -2] >= min_margin
    assert clear.any(), "the reference has no clear top-1 on any image"
    return float((probs.argmax(1) == reference.argmax(1))[clear].mean())


def run_main(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def text_blocks(out):
    """``[(path, [(prob, class_id, label), ...]), ...]`` from the text output."""
    blocks = []
    for line in out.splitlines():
        if not line.startswith("  "):
            blocks.append((line, []))
        else:
            prob, class_id, label = line.split(None, 2)
            blocks[-1][1].append((float(prob), int(class_id), label))
    return blocks


def test_export_writes_one_program_its_weights_and_metadata(export_dir):
    metadata = exported.load_metadata(export_dir)
    assert metadata["model_name"] == "googlenet" and metadata["class_names"] == CLASS_NAMES
    assert metadata["preprocess"]["image_size"] == 64 and metadata["output"] == "probabilities"
    assert metadata["input"] == {"name": "image", "shape": [None, 3, 64, 64], "dtype": "float32"}
    assert metadata["precision"] == "fp32" and "calibration" not in metadata
    program, params = exported.program_files(export_dir)
    assert program.name == (exported.PIR_PROGRAM if exported.paddle_reads_pir() else exported.LEGACY_PROGRAM) == metadata["program_file"]
    assert params.is_file()
    predictor = ExportedPredictor(export_dir, device="cpu")
    assert len(predictor.predictor.get_output_names()) == 1  # no auxiliary heads


def test_exported_model_predicts_what_the_checkpoint_predicts(export_dir, images, reference_probs):
    predictor = ExportedPredictor(export_dir, device="cpu", precision="fp32")
    probs = predictor.predict(preprocess(predictor, images))
    assert probs.shape == (len(images), 3)
    np.testing.assert_allclose(probs, reference_probs, atol=1e-4)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert top1_agreement(probs, reference_probs, min_margin=1e-4) == 1.0


def test_exported_alexnet_with_its_lrn_matches_dygraph(tmp_path):
    import paddle
    from paddle_googlenet.models import get_model

    paddle.seed(0)
    model = get_model("alexnet", num_classes=3)
    model.eval()
    metadata = {"model_name": "alexnet", "class_names": CLASS_NAMES,
                "preprocess": {"image_size": 96, "mean": [0.5] * 3, "std": [0.25] * 3}}
    predictor = ExportedPredictor(export.export_model(model, tmp_path / "alexnet", metadata), device="cpu")
    batch = np.random.default_rng(0).normal(size=(2, 3, 96, 96)).astype("float32")
    expected = paddle.nn.functional.softmax(model(paddle.to_tensor(batch))).numpy()
    assert np.abs(expected - 1 / 3).max() > 1e-3  # the weights make a difference
    np.testing.assert_allclose(predictor.predict(batch), expected, atol=1e-5)


def optimized_operators(export_dir, cache_dir, int8=False):
    """The operators (name and attributes) of the program Paddle Inference runs for an export on the CPU with oneDNN.

    For a PIR program, the attributes hold every value; for a classic one (int8 exports), the string ones.
    """
    import paddle

    program, params = exported.program_files(export_dir)
    config = paddle.inference.Config(str(program), str(params))
    config.disable_gpu()
    getattr(config, "enable_onednn", None) or config.enable_mkldnn()
    if int8:
        getattr(config, "enable_new_ir", lambda on: None)(False)
        config.enable_mkldnn_int8()
    config.enable_save_optim_model(True)  # written when the predictor is created
    config.set_optim_cache_dir(str(cache_dir))
    config.disable_glog_info()
    paddle.inference.create_predictor(config)

    if (cache_dir / "_optimized.pdmodel").is_file():
        from paddle.base.proto import framework_pb2

        desc = framework_pb2.ProgramDesc()
        desc.ParseFromString((cache_dir / "_optimized.pdmodel").read_bytes())
        return [(op.type, {a.name: a.s for a in op.attrs}) for op in desc.blocks[0].ops]

    def operators(node):  # in the PIR JSON format an operator is an object with a name "#" and outputs "O"
        if isinstance(node, dict):
            if "#" in node and "O" in node and isinstance(node.get("A"), list):
                yield node["#"].split(".")[-1], {a["N"]: a["AT"].get("D") for a in node["A"] if isinstance(a, dict)}
            for value in node.values():
                yield from operators(value)
        elif isinstance(node, list):
            for value in node:
                yield from operators(value)

    return list(operators(json.loads((cache_dir / "_optimized.json").read_text())))


def executed_convolutions(model, size=64):
    """How many convolutions ``model`` runs in eval mode (GoogLeNet's auxiliary heads do not run)."""
    import paddle

    convolutions = []
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.Conv2D):
            layer.register_forward_post_hook(lambda *args: convolutions.append(1))
    model.eval()
    with paddle.no_grad():
        model(paddle.zeros([1, 3, size, size]))
    return len(convolutions)


@pytest.mark.paddle_internals
@pytest.mark.skipif(not exported.paddle_reads_pir(), reason="the JSON program format of Paddle 3")
def test_the_export_of_the_plain_model_fuses_every_convolution_with_its_bias_and_relu(export_dir, checkpoint, tmp_path):
    from paddle_googlenet.checkpoint import build_model, load_checkpoint

    convolutions = executed_convolutions(build_model(load_checkpoint(checkpoint)))
    operators = optimized_operators(export_dir, tmp_path)
    names = [name for name, _ in operators]
    fused = [attributes for name, attributes in operators if name == "fused_conv2d"]
    assert len(fused) == convolutions, sorted(set(names))
    assert all(attributes["fuse_activation"] == "relu" for attributes in fused)
    assert not {"conv2d", "add", "elementwise_add", "relu"} & set(names), sorted(set(names))


@pytest.mark.paddle_internals
def test_the_int8_export_runs_every_convolution_in_int8_fused_with_its_bias_and_relu(int8_export_dir, checkpoint, tmp_path):
    from paddle_googlenet.checkpoint import build_model, load_checkpoint

    metadata = exported.load_metadata(int8_export_dir)
    assert metadata["precision"] == "int8" and metadata["program_file"] == exported.LEGACY_PROGRAM
    assert metadata["calibration"]["images"] == 18 and metadata["calibration"]["algorithm"] == "hist"
    operators = optimized_operators(int8_export_dir, tmp_path, int8=True)
    names = [name for name, _ in operators]
    fused = [attributes for name, attributes in operators if name == "fused_conv2d"]
    assert len(fused) == executed_convolutions(build_model(load_checkpoint(checkpoint))), sorted(set(names))
    assert all(attributes["mkldnn_data_type"] == "int8" and attributes["fuse_activation"] == "relu" for attributes in fused)
    assert not {"conv2d", "elementwise_add", "relu", "reshape2"} & set(names), sorted(set(names))
    assert not [name for name in names if name.startswith("fake_")], sorted(set(names))


def test_the_int8_export_predicts_what_the_checkpoint_predicts(int8_export_dir, images, reference_probs, capsys):
    predictor = ExportedPredictor(int8_export_dir, precision="bf16")  # an int8 export runs int8 whatever is asked
    assert (predictor.device, predictor.precision) == ("cpu", "int8")
    assert "this export is int8" in capsys.readouterr().err
    probs = predictor.predict(preprocess(predictor, images))
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(probs, reference_probs, atol=0.1)  # 0.036 here; int8 rounding, not noise
    assert top1_agreement(probs, reference_probs, min_margin=0.2) == 1.0  # a margin over twice atol cannot flip


def test_int8_export_command_calibrates_on_the_runs_training_images_by_default(checkpoint, images, tmp_path, capfd):
    output = tmp_path / "int8"
    assert export.main([str(checkpoint), "--output", str(output), "--int8", "--calibration-images", "5",
                        "--calibration-algo", "abs_max"]) == 0
    out, err = capfd.readouterr()  # Paddle's own messages (e.g. "New Executor is Running") are held back
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("notice: calibrating on 5 image(s) only")], err
    assert "calibrated on 5 of the run's training images (--dataset list), algorithm abs_max" in out and "int8" in out
    assert exported.load_metadata(output)["calibration"] == {
        "source": "the run's training images (--dataset list)", "images": 5, "algorithm": "abs_max"}
    code, out, err = run_main(capfd, output, images[0], "--device", "gpu")
    assert code == 2 and out == "" and err.count("\n") == 1 and "runs on the CPU" in err
    code, out, err = run_main(capfd, output, images[0], "--json", "--topk", "1")
    assert code == 0 and json.loads(out)["topk"][0]["label"] in CLASS_NAMES


def test_int8_calibration_skips_an_unreadable_image_and_errors_leave_the_output_unwritten(checkpoint, images, tmp_path, capsys):
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    shutil.copy(images[0], calibration)
    (calibration / "broken.png").write_bytes(b"not a png")
    output = tmp_path / "int8"
    assert export.main([str(checkpoint), "--output", str(output), "--int8", "--calibrate", str(calibration)]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("notice: calibration: skipped") and "broken.png" in err.splitlines()[0]
    assert "calibrating on 1 image(s) only" in err and err.count("\n") == 2  # and a warning that 1 image is few
    assert "calibrated on 1 of" in out and exported.load_metadata(output)["calibration"]["images"] == 1

    target = tmp_path / "never_written"
    (calibration / Path(images[0]).name).unlink()
    assert export.main([str(checkpoint), "--output", str(target), "--int8", "--calibrate", str(calibration)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "none of the calibration images could be read" in err
    assert export.main([str(checkpoint), "--output", str(target), "--int8", "--calibrate", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing: no such file or folder" in err
    for argv, message in ((["--calibrate", images[0]], "--calibrate is for --int8"),
                          (["--int8", "--onnx"], "--onnx converts float32 exports"),
                          (["--int8", "--calibration-images", "0"], "argument --calibration-images: must be at least 1, got 0")):
        assert export.main([str(checkpoint), "--output", str(target), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not target.exists()


def test_bf16_runs_where_the_cpu_has_it_and_falls_back_otherwise(export_dir, images, reference_probs, capsys):
    predictor = ExportedPredictor(export_dir, device="cpu", precision="bf16")
    probs = predictor.predict(preprocess(predictor, images))
    if cpu_has_fast_bfloat16():
        assert predictor.precision == "bf16"
        np.testing.assert_allclose(probs, reference_probs, atol=0.05)
        assert top1_agreement(probs, reference_probs, min_margin=0.02) >= 0.8
    else:
        assert predictor.precision == "fp32" and "no native bfloat16" in capsys.readouterr().err
        np.testing.assert_allclose(probs, reference_probs, atol=1e-4)


def test_infer_on_a_file_a_folder_and_a_list_file(export_dir, images, tiny_lists, capsys):
    folder, val_list = tiny_lists[1].parent, tiny_lists[1]
    code, out, err = run_main(capsys, export_dir, images[0], folder, val_list, "--topk", "2", "--batch-size", "5")
    assert code == 0, err
    blocks = text_blocks(out)
    listed = [str(folder.resolve() / line.split("\t")[0]) for line in val_list.read_text().splitlines()]
    assert len(listed) == 6 and [path for path, _ in blocks] == [images[0], *images, *listed]
    for _, topk in blocks:
        assert len(topk) == 2
        assert [prob for prob, _, _ in topk] == sorted((prob for prob, _, _ in topk), reverse=True)
        assert all(label == CLASS_NAMES[class_id] for _, class_id, label in topk)


def test_json_lines_agree_between_checkpoint_and_export(checkpoint, export_dir, images, capsys):
    results = {}
    for model_path in (checkpoint, export_dir):
        code, out, err = run_main(capsys, model_path, *images[:4], "--json", "--topk", "3")
        assert code == 0, err
        results[model_path] = [json.loads(line) for line in out.splitlines()]
    from_checkpoint, from_export = results.values()
    assert [r["path"] for r in from_checkpoint] == images[:4]
    first = from_checkpoint[0]["topk"][0]
    assert set(first) == {"class_id", "label", "prob"} and first["label"] == CLASS_NAMES[first["class_id"]]
    for a, b in zip(from_checkpoint, from_export):
        assert len(a["topk"]) == 3
        assert {t["class_id"]: t["prob"] for t in a["topk"]} == pytest.approx({t["class_id"]: t["prob"] for t in b["topk"]}, abs=1e-4)


def test_unreadable_images_are_reported_and_the_others_predicted(export_dir, images, tmp_path, capsys):
    shutil.copy(images[0], tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    code, out, err = run_main(capsys, export_dir, tmp_path, tmp_path / "missing.png", "--json")
    assert code == 1
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(tmp_path / "good.png")]
    assert "broken.png" in err and "empty.jpg" in err and "missing.png: no such file" in err
    assert "2 of 3 images could not be read" in err and "Traceback" not in err


@pytest.mark.parametrize("case", ["missing", "text file", "empty folder", "training folder", "program without metadata"])
def test_a_model_path_that_is_neither_a_checkpoint_nor_an_export_is_a_clear_error(case, checkpoint, export_dir, images, tmp_path, capsys):
    if case == "missing":
        model_path, expected = tmp_path / "nowhere.pdckpt", "does not exist"
    elif case == "text file":
        model_path, expected = tmp_path / "notes.txt", "not a readable checkpoint"
        model_path.write_text("hello\n")
    elif case == "empty folder":
        model_path, expected = tmp_path, "without metadata.json"
    elif case == "training folder":
        model_path, expected = checkpoint.parent, f"pass one of its checkpoints, e.g. {checkpoint.parent / 'best.pdckpt'}"
    else:
        model_path, expected = tmp_path, "no metadata.json"
        shutil.copy(exported.program_files(export_dir)[0], tmp_path)
    code, out, err = run_main(capsys, model_path, images[0])
    assert code == 2 and out == ""
    assert err.startswith("infer.py: error: ") and err.count("\n") == 1 and expected in err and "Traceback" not in err


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_list_files_take_paths_with_or_without_a_label_column(tmp_path):
    other = touch(tmp_path / "elsewhere" / "c.jpg")
    for name in ("a.jpg", "sub/b.png", "with space.png", "scan 7"):
        touch(tmp_path / name)
    list_file = tmp_path / "list.txt"
    list_file.write_text(f"# a comment\na.jpg\t3\nsub/b.png 7\nwith space.png\n\n{other}\nscan 7\t0\nscan 7\n")
    images, problems = collect_images([str(list_file), str(tmp_path / "nothing_here")])
    assert images == [str(tmp_path / name) for name in ("a.jpg", "sub/b.png", "with space.png")] + [str(other), str(tmp_path / "scan 7")]
    assert problems == [  # without a tab, a last word that is an integer is a label, whatever files exist
        f"{list_file}:8: no such image file scan",
        f"{tmp_path / 'nothing_here'}: no such file or folder",
    ]


def test_training_and_prediction_read_a_list_file_and_a_folder_alike(tmp_path):
    names = ["tab\tin name.png", "my photo.png", "sub/c.png", "scan 2.png"]
    for name in names:
        touch(tmp_path / name)
    list_file = tmp_path / "list.txt"
    lines = ["# comment", "tab\tin name.png\t1", "my photo.png 2", "", "  sub/c.png\t0  ", "scan 2.png\t\t3"]
    list_file.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    expected = [str(tmp_path / name) for name in names]
    assert [path for path, _ in read_list_file(list_file)] == expected
    assert collect_images([str(list_file)]) == (expected, [])
    for name in ("B.PNG", "a.Jpg", ".hidden.png", ".cache/d.png", "z/e.webp", "notes.txt"):
        touch(tmp_path / "data" / "train" / "cls" / name)
    touch(tmp_path / "data" / "val" / "cls" / "v.png")
    train, _, _ = read_image_folders(tmp_path / "data")
    assert collect_images([str(tmp_path / "data" / "train")]) == ([path for path, _ in train], [])
    assert [Path(path).name for path, _ in train] == ["B.PNG", "a.Jpg", "e.webp"]


NOT_A_LIST = "names no existing file (a list file holds one image path per line, optionally a tab and a label)"


def test_a_text_file_that_is_not_a_list_is_one_clear_error(export_dir, images, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("\nMeeting notes about the flowers model, 3 March\nAlice: retrain it with more tulips\n")
    code, out, err = run_main(capsys, export_dir, "./notes.txt", images[0])
    assert code == 1
    assert [path for path, _ in text_blocks(out)] == [images[0]]
    about_notes = [line for line in err.splitlines() if "notes" in line]
    assert len(about_notes) == 1, err
    assert about_notes[0].startswith("infer.py: error: ./notes.txt: not a list of images: line 2 ('Meeting notes ")
    assert about_notes[0].endswith(f"') {NOT_A_LIST}")
    assert "cannot read image" not in err and "Traceback" not in err


def test_missing_images_of_a_list_are_reported_by_line_and_the_others_predicted(export_dir, images, tmp_path, capsys):
    list_file = tmp_path / "list.txt"
    missing = [f"gone {i}.png" for i in range(SHOWN_ERRORS + 2)]
    list_file.write_text("\n".join([f"{images[0]}\t0", *(f"{name}\t1" for name in missing), images[1]]) + "\n")
    code, out, err = run_main(capsys, export_dir, list_file, "--json")
    assert code == 1
    assert [json.loads(line)["path"] for line in out.splitlines()] == images[:2]
    errors = err.splitlines()
    assert errors[:SHOWN_ERRORS] == [f"infer.py: error: {list_file}:{i + 2}: no such image file {name}" for i, name in enumerate(missing[:SHOWN_ERRORS])]
    assert errors[SHOWN_ERRORS].startswith(f"infer.py: error: {list_file}: ... and 2 more")
    assert "cannot read image" not in err and "Traceback" not in err


def test_a_paddle_3_export_is_refused_clearly_where_only_pdmodel_is_readable(export_dir, monkeypatch):
    monkeypatch.setattr(exported, "paddle_reads_pir", lambda: False)
    if (Path(export_dir) / exported.PIR_PROGRAM).is_file():
        with pytest.raises(exported.ExportError, match="Paddle 3 \\(PIR\\) program"):
            exported.program_files(export_dir)
    else:
        assert exported.program_files(export_dir)[0].name == exported.LEGACY_PROGRAM


def test_export_command_and_infer_script(checkpoint, images, tmp_path, capfd):
    output = tmp_path / "exported72"
    assert export.main([str(checkpoint), "--output", str(output), "--image-size", "72"]) == 0
    out, err = capfd.readouterr()
    assert f"predict with: python infer.py {output}" in out and err == ""  # no message of Paddle's own
    assert exported.load_metadata(output)["preprocess"]["image_size"] == 72
    run = subprocess.run([sys.executable, "infer.py", str(output), images[0], "--json", "--topk", "1"],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["topk"][0]["label"] in CLASS_NAMES


def test_onnx_export_agrees_with_the_checkpoint(export_dir, images, reference_probs, tmp_path):
    pytest.importorskip("paddle2onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    copy = shutil.copytree(export_dir, tmp_path / "onnx")
    session = onnxruntime.InferenceSession(str(export.write_onnx(copy)), providers=["CPUExecutionProvider"])
    predictor = ExportedPredictor(copy, device="cpu")
    probs = session.run(None, {"image": preprocess(predictor, images)})[0]
    np.testing.assert_allclose(probs, reference_probs, atol=1e-4)


def test_weights_choose_between_the_trained_weights_and_their_average(ema_checkpoint, images, tmp_path, capsys):
    probs = {}
    for weights in ("auto", "weights", "ema"):
        predictor = CheckpointPredictor(ema_checkpoint, device="cpu", weights=weights)
        probs[weights] = predictor.predict(preprocess(predictor, images))
    assert np.abs(probs["weights"] - probs["ema"]).max() > 1e-3
    np.testing.assert_array_equal(probs["auto"], probs["ema"])  # the run chose its best by the EMA
    folder = export.export_checkpoint(ema_checkpoint, tmp_path / "trained", weights="weights")
    assert exported.load_metadata(folder)["checkpoint"]["weights"] == "weights"
    predictor = ExportedPredictor(folder, device="cpu")
    np.testing.assert_allclose(predictor.predict(preprocess(predictor, images)), probs["weights"], atol=1e-4)


def test_asking_for_the_average_of_a_run_without_one_is_one_error_line(checkpoint, images, capsys):
    code, out, err = run_main(capsys, checkpoint, images[0], "--weights", "ema")
    assert code == 2 and out == "" and err.count("\n") == 1 and "holds no moving average" in err


def test_an_export_never_replaces_an_earlier_one_without_overwrite(checkpoint, tmp_path, capsys):
    output = tmp_path / "export"
    assert export.main([str(checkpoint), "--output", str(output)]) == 0
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    capsys.readouterr()
    assert export.main([str(checkpoint), "--output", str(output), "--image-size", "72"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds an export" in err and "--overwrite" in err
    assert export.main([str(checkpoint), "--output", str(output), "--int8", "--calibrate", str(output)]) == 2
    err = capsys.readouterr().err  # refused before the calibration images are read (the folder holds none)
    assert err.count("\n") == 1 and "already holds an export" in err
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert export.main([str(checkpoint), "--output", str(output), "--image-size", "72", "--overwrite"]) == 0
    assert exported.load_metadata(output)["preprocess"]["image_size"] == 72


def test_an_export_folder_that_mixes_two_exports_is_one_error_line(export_dir, images, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    shutil.copytree(export_dir, mixed)
    metadata = json.loads((mixed / "metadata.json").read_text())
    metadata["class_names"] = metadata["class_names"][:2]  # the metadata of another export
    (mixed / "metadata.json").write_text(json.dumps(metadata))
    code, out, err = run_main(capsys, mixed, images[0])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "its program outputs 3 classes but metadata.json names 2" in err


def test_json_output_is_valid_utf8_for_a_file_name_that_is_not(export_dir, images, tmp_path):
    folder = os.fsencode(tmp_path)
    shutil.copy(images[0], os.path.join(folder, b"caf\xe9.png"))  # a Latin-1 file name
    run = subprocess.run([sys.executable, "infer.py", str(export_dir), str(tmp_path), "--json"], cwd=REPO,
                         capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout.decode("utf-8"))  # valid UTF-8 JSON text
    assert os.fsencode(record["path"]) == os.path.join(folder, b"caf\xe9.png")
