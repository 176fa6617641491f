"""safe_load.load: crafted pickles are refused before they run anything; real Paddle files load bit for bit."""

import codecs
import os
import pickle
import pickletools
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

from paddle_googlenet import safe_load
from paddle_googlenet.errors import UserError
from paddle_googlenet.safe_load import UnreadableFileError, UnsafeFileError

PROTOCOLS = (0, 2, 4, 5)


# --- crafted files ---------------------------------------------------------------------------------


class Reduce:
    """Pickles as ``func(*args)``: what a crafted file makes the unpickler call."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle accepts only a callable as a reduce's function
        raise AssertionError("never called while pickling")


def touch_command(marker):
    return f"touch '{marker}'"


PAYLOADS = {
    # name: (make the payload from the marker path, the global the refusal must name)
    "os.system": (lambda m: Reduce(os.system, touch_command(m)), f"{os.system.__module__}.system"),
    "eval": (lambda m: Reduce(eval, f"open({str(m)!r}, 'w').close()"), "builtins.eval"),
    "subprocess.Popen": (lambda m: Reduce(subprocess.Popen, ["touch", str(m)]), "subprocess.Popen"),
    "getattr chain": (
        lambda m: Reduce(Reduce(getattr, Reduce(__import__, "os"), "system"), touch_command(m)),
        "builtins.getattr",
    ),
    "inside a nested dict": (
        lambda m: {"model": {"w": np.float32(1.5)}, "extra": {"deep": {"x": Reduce(os.system, touch_command(m))}}},
        f"{os.system.__module__}.system",
    ),
    "inside a list": (
        lambda m: {"decay": np.float64(0.99), "class_names": ["a", Reduce(os.system, touch_command(m)), "c"]},
        f"{os.system.__module__}.system",
    ),
}


def write_pickle(path, obj, protocol):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def assert_one_line(message, *parts):
    assert len(message.splitlines()) == 1 and "\n" not in message and "\r" not in message, message
    for part in parts:
        assert part in message, (part, message)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", PAYLOADS)
def test_crafted_file_is_refused_before_it_runs(tmp_path, kind, protocol):
    make, name = PAYLOADS[kind]
    marker = tmp_path / "MARKER"
    path = write_pickle(tmp_path / "evil.pdparams", make(marker), protocol)
    with pytest.raises(UnsafeFileError) as caught:
        safe_load.load(path)
    message = str(caught.value)
    assert_one_line(message, str(path), "refused to load", f"the Python global {name}")
    time.sleep(0.05)  # a spawned process would have had time to touch the marker
    assert not marker.exists()
    assert isinstance(caught.value, UserError) and caught.value.exit_code == 2


@pytest.mark.parametrize("kind", PAYLOADS)
def test_crafted_files_do_run_code_under_plain_pickle(tmp_path, kind):
    """The control: each crafted file is a real attack (plain unpickling runs it)."""
    marker = tmp_path / "MARKER"
    path = write_pickle(tmp_path / "evil.pdparams", PAYLOADS[kind][0](marker), 4)
    with open(path, "rb") as f:
        loaded = pickle.load(f)
    if isinstance(loaded, subprocess.Popen):
        loaded.wait(timeout=10)
    assert marker.exists()


def test_the_exact_reduce_of_a_dense_tensor_through_eval_is_refused(tmp_path):
    """paddle.save(DenseTensor) pickles ``eval('data', {'data': array})``; no file of ours holds one."""
    tensor = paddle.to_tensor([1.0, 2.0])
    dense = tensor.value().get_tensor()  # keep ``tensor`` alive while ``dense`` is saved
    path = tmp_path / "dense.pdtensor"
    paddle.save(dense, str(path))
    with pytest.raises(UnsafeFileError) as caught:
        safe_load.load(path)
    assert_one_line(str(caught.value), str(path), "builtins.eval")


@pytest.mark.parametrize("protocol", (2, 4))
@pytest.mark.parametrize("payload, named", [
    (Reduce(codecs.encode, "uryyb", "rot13"), "_codecs.encode with encoding 'rot13'"),
    (Reduce(bytes, 10**6), "builtins.bytes with arguments"),
    (Reduce(np.ndarray.__reduce__(np.zeros(1))[0], np.ndarray, (0,), b"b"), None),  # allowed: an array
])
def test_stand_ins_of_protocol_2_bytes_do_only_that(tmp_path, protocol, payload, named):
    path = write_pickle(tmp_path / "odd.pdparams", payload, protocol)
    if named is None:
        assert isinstance(safe_load.load(path), np.ndarray)
        return
    with pytest.raises(UnsafeFileError) as caught:
        safe_load.load(path)
    assert_one_line(str(caught.value), str(path), named)


def test_protocol_5_arrays_are_refused(tmp_path):
    """paddle.save writes protocols 2 to 4 only; protocol 5 pickles arrays with a function of its own."""
    path = write_pickle(tmp_path / "p5.pdparams", {"w": np.ones(3)}, 5)
    with pytest.raises(UnsafeFileError) as caught:
        safe_load.load(path)
    assert_one_line(str(caught.value), str(path), "numeric._frombuffer")


def test_a_global_name_with_a_newline_still_gives_a_one_line_message(tmp_path):
    module, name = b"os\nsecond line", b"system"
    data = b"\x80\x04\x8c" + bytes([len(module)]) + module + b"\x8c" + bytes([len(name)]) + name + b"\x93."
    path = tmp_path / "newline.pdparams"
    path.write_bytes(data)
    with pytest.raises(UnsafeFileError) as caught:
        safe_load.load(path)
    assert_one_line(str(caught.value), str(path), "os\\nsecond line.system")


# --- real files ----------------------------------------------------------------------------------


class Small(paddle.nn.Layer):
    """Conv, BatchNorm (buffers ``_mean`` and ``_variance``) and Linear."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3)
        self.bn = paddle.nn.BatchNorm2D(4)
        self.fc = paddle.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean(axis=[2, 3]))


class HalvingSchedule(paddle.optimizer.lr.LRScheduler):
    """An LRScheduler subclass with a state key of its own, like the project's TrainingSchedule."""

    def __init__(self, learning_rate):
        self.samples_seen = 0
        super().__init__(learning_rate)

    def get_lr(self):
        return self.base_lr * 0.5**self.last_epoch

    def state_keys(self):
        self.keys = ["last_epoch", "last_lr", "samples_seen"]


@pytest.fixture(scope="module")
def trained():
    """(model, optimizer, scheduler) after one optimizer step, so the optimizer has accumulators."""
    paddle.seed(0)
    model = Small()
    scheduler = HalvingSchedule(0.1)
    optimizer = paddle.optimizer.Momentum(learning_rate=scheduler, momentum=0.9, parameters=model.parameters(),
                                          weight_decay=paddle.regularizer.L2Decay(1e-4))
    model(paddle.randn([2, 3, 8, 8])).sum().backward()
    optimizer.step()
    optimizer.clear_grad()
    scheduler.samples_seen = 12
    scheduler.step()
    return model, optimizer, scheduler


@pytest.fixture(scope="module")
def vision_state():
    return paddle.vision.models.resnet18(pretrained=False).state_dict()


def checkpoint_like(model, optimizer, scheduler):
    return {
        "format": "paddle-googlenet-checkpoint",
        "model_name": "small",
        "model": model.state_dict(),
        "ema": {"decay": 0.99, "values": {name: value.numpy() * 0.5 for name, value in model.state_dict().items()}},
        "best_of": "weights",
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "train_state": {"epoch": 1, "step": 3, "best_val_top1": -1.0, "epoch_sums": {"loss": 1.5, "count": 6}},
        "seed": 0,
        "args": {"model": "small", "lr": 0.1, "pretrained": None, "milestones": [1, 2], "amp": False, "output": "runs/x"},
        "class_names": ["blue square", "green square", "red square"],
        "preprocess": {"image_size": 64, "resize_size": 73, "mean": [0.485, 0.456, 0.406], "channel_order": "RGB"},
        "model_kwargs": {"num_classes": 3, "dropout": 0.4},
        "numpy_scalars": {"f64": np.float64(0.25), "i64": np.int64(-7), "f32": np.float32(1.5), "bool": np.bool_(True)},
    }


def as_numpy(obj):
    """``obj`` with every Paddle tensor replaced by its NumPy array: what ``load`` must give back."""
    if isinstance(obj, paddle.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return type(obj)((key, as_numpy(value)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(as_numpy(value) for value in obj)
    return obj


def assert_same(loaded, expected, where="file"):
    """Same structure and key order, every array bit-equal with its dtype, every other value == and of its type."""
    assert not isinstance(loaded, paddle.Tensor), where
    if isinstance(expected, np.ndarray):
        assert type(loaded) is np.ndarray, where
        assert (loaded.dtype, loaded.shape) == (expected.dtype, expected.shape), where
        assert np.array_equal(loaded, expected), where
    elif isinstance(expected, dict):
        assert isinstance(loaded, dict) and list(loaded) == list(expected), (where, list(loaded), list(expected))
        for key in expected:
            assert_same(loaded[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert type(loaded) is type(expected) and len(loaded) == len(expected), where
        for i, (item, wanted) in enumerate(zip(loaded, expected)):
            assert_same(item, wanted, f"{where}[{i}]")
    else:
        assert type(loaded) is type(expected) and loaded == expected, (where, loaded, expected)


@pytest.mark.parametrize("protocol", (2, 3, 4))
def test_state_dict_with_batchnorm_buffers(tmp_path, trained, protocol):
    model = trained[0]
    path = tmp_path / "small.pdparams"
    paddle.save(model.state_dict(), str(path), protocol=protocol)
    loaded = safe_load.load(path)
    assert {"bn._mean", "bn._variance"} <= set(loaded) and safe_load.NAME_TABLE not in loaded
    assert_same(loaded, as_numpy(model.state_dict()))


@pytest.mark.parametrize("protocol", (2, 4))
def test_paddle_vision_state_dict(tmp_path, vision_state, protocol):
    path = tmp_path / "resnet18.pdparams"
    paddle.save(vision_state, str(path), protocol=protocol)
    assert_same(safe_load.load(path), as_numpy(vision_state))


@pytest.mark.parametrize("protocol", (2, 4))
def test_checkpoint_with_optimizer_scheduler_ema_and_numpy_scalars(tmp_path, trained, protocol):
    state = checkpoint_like(*trained)
    assert "LR_Scheduler" in state["optimizer"] and len(state["optimizer"]) > 1  # accumulators after a step
    path = tmp_path / "run.pdckpt"
    paddle.save(state, str(path), protocol=protocol)
    loaded = safe_load.load(path)
    assert_same(loaded, as_numpy(state))
    assert loaded["lr_scheduler"]["samples_seen"] == 12 and type(loaded["numpy_scalars"]["f64"]) is np.float64


def test_loaded_checkpoint_restores_model_and_optimizer(tmp_path, trained):
    """The callers' use: NumPy arrays go straight into set_state_dict."""
    model, optimizer, scheduler = trained
    path = tmp_path / "run.pdckpt"
    paddle.save(checkpoint_like(model, optimizer, scheduler), str(path))
    loaded = safe_load.load(path)
    fresh = Small()
    fresh.set_state_dict(loaded["model"])
    for name, value in model.state_dict().items():
        assert np.array_equal(fresh.state_dict()[name].numpy(), value.numpy()), name
    fresh_scheduler = HalvingSchedule(0.1)
    fresh_optimizer = paddle.optimizer.Momentum(learning_rate=fresh_scheduler, parameters=fresh.parameters())
    fresh_optimizer.set_state_dict(loaded["optimizer"])
    fresh_scheduler.set_state_dict(loaded["lr_scheduler"])
    assert fresh_scheduler.last_epoch == scheduler.last_epoch and fresh_scheduler.samples_seen == 12


def test_a_bare_tensor_comes_back_as_an_array(tmp_path):
    tensor = paddle.to_tensor(np.arange(6, dtype="int64").reshape(2, 3))
    path = tmp_path / "t.pdtensor"
    paddle.save(tensor, str(path))
    assert_same(safe_load.load(path), tensor.numpy())


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64", "int8", "uint8", "int32", "int64", "bool"])
@pytest.mark.parametrize("protocol", (2, 4))
def test_every_dtype_and_an_empty_tensor(tmp_path, dtype, protocol):
    state = {"x": paddle.ones([2, 3], dtype=dtype), "empty": paddle.zeros([0, 3], dtype=dtype)}
    for name, file_state in (("flat", state), ("nested", {"model": state})):
        path = tmp_path / f"{name}.pdparams"
        paddle.save(file_state, str(path), protocol=protocol)
        assert_same(safe_load.load(path), as_numpy(file_state))


def test_arrays_split_by_protocol_2_are_joined(tmp_path):
    """The layout paddle.save(protocol=2 or 3) gives an array over 2**30 - 1 bytes, written by hand.

    A real one (paddle.save of a 2**30 + 8 element uint8 tensor) is a 1 GiB file needing 5.6 GB of
    memory to write, too much for the suite; this is its exact layout, scaled down.
    """
    big = np.arange(24, dtype="float32").reshape(2, 3, 4)
    flat = big.flatten()
    saved = {
        "small": np.ones(3, "float32"),
        "StructuredToParameterName@@": {"big": "eager_tmp_0", "small": "eager_tmp_1"},
        "big@@.0": flat[:20],
        "big@@.1": flat[20:],
        "UnpackBigParamInfor@@": {"big": {"OriginShape": big.shape, "slices": ["big@@.0", "big@@.1"]}},
    }
    path = write_pickle(tmp_path / "split.pdparams", saved, 2)
    loaded = safe_load.load(path)
    assert sorted(loaded) == ["big", "small"]
    assert_same(loaded["big"], big)
    assert_same(loaded["small"], saved["small"])


def renamed_module(data, old, new):
    """The pickle ``data`` with the module ``old`` of its globals spelt ``new`` (frames dropped: optional)."""
    ops = list(pickletools.genops(data))
    ends = [pos for _, _, pos in ops[1:]] + [len(data)]
    out = []
    for (op, arg, pos), end in zip(ops, ends):
        if op.name == "FRAME":
            continue
        if op.name == "SHORT_BINUNICODE" and arg == old:
            out.append(b"\x8c" + bytes([len(new)]) + new.encode())
        elif op.name == "GLOBAL" and arg.startswith(old + " "):
            out.append(b"c" + new.encode() + b"\n" + arg.split(" ", 1)[1].encode() + b"\n")
        else:
            out.append(data[pos:end])
    return b"".join(out)


@pytest.mark.parametrize("protocol", (2, 4))
def test_arrays_pickled_under_the_other_numpy_major_version(tmp_path, protocol):
    """NumPy 1 pickles name numpy.core.multiarray, NumPy 2 numpy._core.multiarray; both load on either."""
    state = {"w": np.linspace(0, 1, 7, dtype="float32"), "step": np.int64(5), "lr": np.float64(0.1)}
    data = pickle.dumps(state, protocol=protocol)
    ours = "numpy._core.multiarray" if b"numpy._core.multiarray" in data else "numpy.core.multiarray"
    other = {"numpy._core.multiarray": "numpy.core.multiarray", "numpy.core.multiarray": "numpy._core.multiarray"}[ours]
    foreign = renamed_module(data, ours, other)
    assert other.encode() in foreign and ours.encode() not in foreign
    path = tmp_path / "other_numpy.pdparams"
    path.write_bytes(foreign)
    assert_same(safe_load.load(path), state)


def test_loading_imports_no_paddle(tmp_path):
    path = write_pickle(tmp_path / "w.pdparams", {"w": np.ones(2, "float32"), "n": np.float64(1)}, 4)
    code = ("import sys; from paddle_googlenet import safe_load; state = safe_load.load(sys.argv[1]); "
            "assert 'paddle' not in sys.modules, 'paddle imported'; print(sorted(state))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "['n', 'w']"


# --- unreadable files ------------------------------------------------------------------------------


def unreadable_files(tmp_path):
    real = tmp_path / "real.pdparams"
    paddle.save({"w": paddle.ones([64, 64])}, str(real))
    data = real.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "random bytes": b"\x00" + np.random.default_rng(0).bytes(4096),
        "empty": b"",
        "text": b'{"w": [1, 2, 3]}\n',
        "persistent id": b"\x80\x04\x8c\x01x\x94Q.",
    }
    for name, content in files.items():
        (tmp_path / f"{name}.pdparams").write_bytes(content)
    return [tmp_path / f"{name}.pdparams" for name in files] + [tmp_path / "missing.pdparams"]


def test_unreadable_files_are_one_line_errors(tmp_path):
    for path in unreadable_files(tmp_path):
        with pytest.raises(UnreadableFileError) as caught:
            safe_load.load(path)
        assert_one_line(str(caught.value), str(path), "not a readable Paddle weights file")
        assert isinstance(caught.value, UserError) and not isinstance(caught.value, UnsafeFileError)


# --- safetensors -----------------------------------------------------------------------------------


def test_safetensors_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    arrays = {
        "conv.weight": np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype("float32"),
        "fc.weight.T": np.arange(12, dtype="float64").reshape(3, 4).T,  # not contiguous
        "bn._mean": np.zeros(4, "float16"),
        "steps": np.array([3], "int64"),
        "mask": np.array([True, False]),
        "bytes": np.arange(5, dtype="uint8"),
    }
    path = tmp_path / "w.safetensors"
    safe_load.save_safetensors(arrays, path, metadata={"format": "pt", "model": "small"})
    loaded = safe_load.load_safetensors(path)
    assert sorted(loaded) == sorted(arrays)
    for name, value in arrays.items():
        assert_same(loaded[name], value, name)


def test_safetensors_unreadable_file(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UnreadableFileError) as caught:
        safe_load.load_safetensors(path)
    assert_one_line(str(caught.value), str(path), "not a readable safetensors file")


def test_safetensors_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes ``import safetensors`` fail
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    for call in (lambda: safe_load.load_safetensors(tmp_path / "w.safetensors"),
                 lambda: safe_load.save_safetensors({"w": np.ones(1)}, tmp_path / "w.safetensors")):
        with pytest.raises(UserError) as caught:
            call()
        assert_one_line(str(caught.value), "pip install safetensors")
