"""train.py: the legacy schedule and loss, checkpoints, resume, interruption, divergence, data parallelism."""

import os
import platform
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_googlenet.checkpoint import load_checkpoint
from paddle_googlenet.engine import classification_loss
from paddle_googlenet.models import GoogLeNetOutputs
from paddle_googlenet.schedule import TrainingSchedule
from paddle_googlenet.options import get_args_parser, resolve, resolve_paths
from paddle_googlenet.training import main

from helpers import REPO, read_metrics, start_script, weights, write_tiny_list_dataset
from helpers import tiny_args as shared_tiny_args


def tiny_args(tiny_lists, output, *extra):
    return shared_tiny_args(tiny_lists, output, "--log-interval", "1", *extra)


def resolved(*argv):
    return resolve(resolve_paths(get_args_parser().parse_args(list(argv))))


def test_defaults_follow_the_legacy_recipe():
    args = resolved("googlenet")
    assert (args.epochs, args.batch_size, args.lr, args.momentum, args.weight_decay) == (200, 128, 0.01, 0.9, 5e-4)
    assert (args.lr_decay_rate, args.lr_decay_samples, args.aux_weight, args.image_size) == (0.1, 4_480_000, 0.3, 224)
    assert args.output == os.path.join("output", "googlenet") and args.logdir == os.path.join("output", "googlenet", "vdl")
    assert resolved("resnet").lr == 0.1


def test_digits_decay_after_5_epochs_unless_an_interval_is_given():
    def interval(*flags):
        args = resolved("googlenet", "--dataset", "digits", *flags)
        return args.lr_decay_epochs, args.lr_decay_samples

    assert interval() == (5, None)
    assert interval("--lr-decay-samples", "1000") == (None, 1000)
    assert interval("--lr-decay-epochs", "3") == (3, None)
    assert resolved("googlenet", "--lr-decay-epochs", "3").lr_decay_samples is None  # one interval, never two
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["googlenet", "--lr-decay-samples", "1000", "--lr-decay-epochs", "3"])


def test_a_resumed_run_keeps_its_own_recipe_even_where_it_left_a_flag_unset():
    run = resolved("googlenet", "--dataset", "digits", "--lr-decay-samples", "1000", "--lr", "0.05")
    recorded = vars(run)
    resumed = resolve(resolve_paths(get_args_parser().parse_args(["googlenet", "--dataset", "digits", "--resume", "auto"])),
                      recorded, "latest.pdckpt")
    assert (resumed.lr_decay_samples, resumed.lr_decay_epochs, resumed.lr) == (1000, None, 0.05)  # not digits' 5 epochs


@pytest.mark.parametrize("batch", [128, 5])
def test_discexp_schedule_matches_the_legacy_formula_at_its_boundaries(batch):
    lr0, rate, decay_samples = 0.01, 0.1, 640
    scheduler = TrainingSchedule(lr0, "discexp", rate, decay_samples)
    seen = 0
    for _ in range(3 * decay_samples // batch + 2):
        scheduler.start_batch(batch)
        seen += batch  # the legacy counts the current batch before computing the rate
        assert scheduler.last_lr == pytest.approx(lr0 * rate ** (seen // decay_samples))
    assert scheduler.last_lr < lr0 * rate**2  # it went past two boundaries


def test_discexp_first_decay_comes_after_729_flowers_epochs():
    scheduler = TrainingSchedule(0.01, "discexp", 0.1, 4_480_000)
    epochs = 0
    while scheduler.last_lr == 0.01:
        for _ in range(6149 // 128):
            scheduler.start_batch(128)
        scheduler.start_batch(6149 % 128)
        epochs += 1
    assert epochs == 729  # decays inside epoch 729, so 200 legacy epochs never decay


def test_schedule_state_round_trip():
    scheduler = TrainingSchedule(0.1, "discexp", 0.5, 10)
    for _ in range(7):
        scheduler.start_batch(3)
    restored = TrainingSchedule(0.1, "discexp", 0.5, 10)
    restored.set_state_dict(scheduler.state_dict())
    restored.start_batch(3)
    scheduler.start_batch(3)
    assert restored.samples_seen == scheduler.samples_seen == 24 and restored.last_lr == scheduler.last_lr == 0.025


def test_aux_losses_are_weighted_and_reported_per_head():
    paddle.seed(0)
    labels = paddle.to_tensor([0, 2, 1])
    outputs = GoogLeNetOutputs(*(paddle.randn([3, 4]) for _ in range(3)))
    total, heads, losses = classification_loss(outputs, labels, aux_weight=0.3)
    ce = [float(paddle.nn.functional.cross_entropy(o, labels)) for o in outputs]
    assert float(total) == pytest.approx(ce[0] + 0.3 * (ce[1] + ce[2]), rel=1e-6)
    assert [float(losses[k]) for k in ("", "_aux1", "_aux2")] == pytest.approx(ce, rel=1e-6)
    single_total, single_heads, _ = classification_loss(outputs.logits, labels, aux_weight=0.3)
    assert float(single_total) == pytest.approx(ce[0], rel=1e-6) and list(single_heads) == [""]


def test_a_run_writes_metrics_and_self_describing_checkpoints(tiny_lists, tmp_path):
    assert main(tiny_args(tiny_lists, tmp_path, "--keep-checkpoints", "1")) == 0
    metrics = read_metrics(tmp_path)
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert [m["global_step"] for m in metrics] == [3, 6]  # 18 train images, batch 6
    required = {"epoch", "global_step", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "seconds", "img_per_s"}
    assert required <= set(metrics[0]) and {"train_loss_aux1", "train_top1_aux2", "val_error"} <= set(metrics[0])
    names = sorted(p.name for p in tmp_path.glob("*.pdckpt"))
    assert names == ["best.pdckpt", "epoch_2.pdckpt", "latest.pdckpt"]
    ckpt = load_checkpoint(tmp_path / "latest.pdckpt")
    assert ckpt["model_name"] == "googlenet" and ckpt["model_kwargs"] == {"num_classes": 3}
    assert ckpt["class_names"] == ["0", "1", "2"] and ckpt["preprocess"]["image_size"] == 64
    assert ckpt["train_state"]["epoch"] == 2 and ckpt["train_state"]["global_step"] == 6
    assert ckpt["lr_scheduler"]["samples_seen"] == 36
    best_epoch = max(metrics, key=lambda m: m["val_top1"])["epoch"]  # ties keep the first
    assert load_checkpoint(tmp_path / "best.pdckpt")["train_state"]["epoch"] == best_epoch


def final_weights(output):
    return weights(load_checkpoint(Path(output) / "latest.pdckpt"))


def test_resume_after_an_epoch_ends_with_the_same_weights(tiny_lists, tmp_path):
    assert main(tiny_args(tiny_lists, tmp_path / "straight")) == 0
    assert main(tiny_args(tiny_lists, tmp_path / "resumed", "--epochs", "1")) == 0
    assert main(tiny_args(tiny_lists, tmp_path / "resumed", "--resume", "auto")) == 0
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        np.testing.assert_array_equal(straight[name], resumed[name], err_msg=name)
    assert [m["global_step"] for m in read_metrics(tmp_path / "resumed")] == [3, 6]


def test_resuming_an_earlier_epoch_in_its_own_folder_is_refused(tiny_lists, tmp_path, capsys):
    """It would replace the run's later epochs: one line, exit 2, nothing touched; --resume auto continues."""
    assert main(tiny_args(tiny_lists, tmp_path)) == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    capsys.readouterr()
    assert main(tiny_args(tiny_lists, tmp_path, "--epochs", "3", "--resume", str(tmp_path / "epoch_1.pdckpt"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "epoch_1.pdckpt is an earlier state of the run" in err and "--output DIR" in err
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == before
    assert main(tiny_args(tiny_lists, tmp_path, "--epochs", "3", "--resume", "auto")) == 0
    assert [m["epoch"] for m in read_metrics(tmp_path)] == [1, 2, 3]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tiny_lists, tmp_path, capsys):
    assert main(tiny_args(tiny_lists, tmp_path, "--epochs", "1")) == 0
    latest = tmp_path / "latest.pdckpt"
    before = latest.read_bytes()
    code = main(tiny_args(tiny_lists, tmp_path, "--epochs", "3", "--resume", "auto", "--lr", "1e12"))
    err = capsys.readouterr().err
    assert code == 3
    assert "training loss became" in err and "epoch 2, step" in err and "lower --lr" in err
    assert latest.read_bytes() == before


def test_unwritable_output_fails_before_training(tiny_lists, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(tiny_args(tiny_lists, blocker / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot use {blocker / 'out'} as the --output folder" in err


FRESH_BUFFER_FAULTS = """
import ctypes, resource, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
def page_faults_of_a_new_64_mib_buffer():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = libc.malloc(2**26)
    ctypes.memset(buffer, 1, 2**26)
    libc.free(ctypes.c_void_p(buffer))
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
if sys.argv[1] == "keep":
    from paddle_googlenet.device import keep_freed_memory
    print(keep_freed_memory())
elif sys.argv[1] == "train":  # train.py's set-up, stopped by its output folder
    from paddle_googlenet.training import main
    print(main(sys.argv[2:]))
else:
    print("default")
page_faults_of_a_new_64_mib_buffer()  # the first one may grow the heap
print(page_faults_of_a_new_64_mib_buffer())
"""


def fresh_buffer_faults(*argv, **env):
    """(what the set-up printed, page faults of a newly allocated and filled 64 MiB buffer) in a fresh process."""
    glibc_defaults = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", FRESH_BUFFER_FAULTS, *argv], capture_output=True, text=True,
                         env={**glibc_defaults, **env}, check=True).stdout.split()
    return out[-2], int(out[-1])


@pytest.mark.glibc
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_memory_is_reused_without_page_faults():
    took, faults = fresh_buffer_faults("default")
    assert faults > 10_000  # 16,384 pages of 4 KiB, mapped and zero-filled afresh
    took, faults = fresh_buffer_faults("keep")
    assert took == "True" and faults < 1_000
    took, faults = fresh_buffer_faults("keep", MALLOC_MMAP_MAX_="65536")  # the user's own policy wins
    assert took == "False" and faults > 10_000


@pytest.mark.glibc
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("flags, kept", [((), True), (("--system-malloc",), False)])
def test_train_keeps_freed_memory_unless_told_not_to(tiny_lists, tmp_path, flags, kept):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, faults = fresh_buffer_faults("train", *tiny_args(tiny_lists, blocker / "out", *flags))
    assert code == "2"  # stopped right after the process set-up
    assert (faults < 1_000) if kept else (faults > 10_000)


def test_resume_of_a_missing_checkpoint_is_a_clear_error(tiny_lists, tmp_path, capsys):
    assert main(tiny_args(tiny_lists, tmp_path, "--resume", str(tmp_path / "nope.pdckpt"))) == 2
    assert "no such checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_saves_latest_and_resume_finishes_the_run(tiny_lists, tmp_path):
    proc = start_script("train.py", *tiny_args(tiny_lists, tmp_path, "--epochs", "50"))
    for line in proc.stdout:
        if line.startswith("epoch 1/50 step 2/3"):
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert out.strip().splitlines()[-1].startswith("stopped by SIGTERM: saved")
    assert "Traceback" not in err
    state = load_checkpoint(tmp_path / "latest.pdckpt")["train_state"]
    assert state["epoch"] == 0 and state["step_in_epoch"] >= 2
    assert main(tiny_args(tiny_lists, tmp_path, "--epochs", "1", "--resume", "auto")) == 0
    assert [m["global_step"] for m in read_metrics(tmp_path)] == [3]


def launcher_env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "OMP_", "MKL_"))}


def worker_command(weights_dir, train_args, launcher=()):
    return [sys.executable, *launcher, str(REPO / "tests" / "dist_worker.py"), str(weights_dir), *train_args]


def launcher_logs(folder):
    return "\n".join(p.read_text() for p in sorted(Path(folder).glob("*")) if p.is_file())


def rank_arrays(weights_dir):
    return {int(path.stem[4:]): dict(np.load(path)) for path in Path(weights_dir).glob("rank*.npz")}


def run_worker(tmp_path, name, train_args, nproc=None):
    """tests/dist_worker.py alone (one thread) or under the launcher with ``nproc`` ranks; {rank: npz arrays}."""
    weights_dir = tmp_path / f"{name}_weights"
    weights_dir.mkdir()
    env = launcher_env()
    launcher = [] if nproc is None else ["-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
                                         "--log_dir", str(tmp_path / f"{name}_logs")]
    if nproc is None:
        env["MKL_NUM_THREADS"] = "1"  # as each of two ranks on two cores
    result = subprocess.run(worker_command(weights_dir, train_args, launcher), capture_output=True, text=True,
                            timeout=600, env=env, cwd=tmp_path)
    logs = launcher_logs(tmp_path / f"{name}_logs") if nproc else ""
    assert result.returncode == 0, (result.stderr + logs)[-3000:]
    return rank_arrays(weights_dir)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_machines_train_as_two_processes_on_one_machine_do(tiny_lists, tmp_path):
    """Two launchers, one per node (``--nnodes 2 --rank R``) meeting at a master on 127.0.0.1, as on two machines:
    the run ends with the weights of ``--nproc_per_node 2`` on one node, and only node 0's rank 0 writes."""
    recipe = ["--dropout", "0", "--aux-dropout", "0", "--epochs", "1", "--ema", "0.9"]
    local = run_worker(tmp_path, "local", tiny_args(tiny_lists, tmp_path / "local", *recipe), nproc=2)
    weights_dir, master = tmp_path / "nodes_weights", f"127.0.0.1:{free_port()}"
    weights_dir.mkdir()
    nodes = [subprocess.Popen(worker_command(weights_dir, tiny_args(tiny_lists, tmp_path / "nodes", *recipe),
                                             ["-m", "paddle.distributed.launch", "--master", master, "--nnodes", "2",
                                              "--rank", str(node), "--nproc_per_node", "1",
                                              "--log_dir", str(tmp_path / f"node{node}_logs")]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              env={**launcher_env(), "MKL_NUM_THREADS": "1"})  # as each rank of the local run
             for node in (0, 1)]
    for node, proc in enumerate(nodes):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (err + launcher_logs(tmp_path / f"node{node}_logs"))[-3000:]
    ranks = rank_arrays(weights_dir)
    assert sorted(ranks) == [0, 1]
    for key in local[0]:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
        np.testing.assert_array_equal(ranks[0][key], local[0][key], err_msg=key)
    assert [m["epoch"] for m in read_metrics(tmp_path / "nodes")] == [1]
    assert read_metrics(tmp_path / "nodes")[0]["train_loss"] == pytest.approx(read_metrics(tmp_path / "local")[0]["train_loss"], rel=1e-6)


@pytest.mark.slow
def test_two_process_data_parallel_matches_one_process(tmp_path):
    """gloo on CPU: after one step on the same six images, both ranks hold the same weights and EMA, and
    their update equals one process's on the whole batch (the mean of the two ranks' gradients).

    One step: both sides then compute every image's forward pass with the same weights, so no max pool
    can choose differently, and only the gradient's summation order differs."""
    lists = write_tiny_list_dataset(tmp_path / "data", classes=3, per_class=3)  # 6 train, 3 val images
    recipe = ["--dropout", "0", "--aux-dropout", "0", "--epochs", "1", "--ema", "0.5"]
    args = lambda output: tiny_args(lists, tmp_path / output, *recipe)  # noqa: E731
    (single,) = run_worker(tmp_path, "single", args("single")).values()
    ranks = run_worker(tmp_path, "multi", args("multi"), nproc=2)
    assert sorted(ranks) == [0, 1]
    names = [key[len("final/"):] for key in single if key.startswith("final/")]
    for name in names:
        np.testing.assert_array_equal(ranks[0][f"final/{name}"], ranks[1][f"final/{name}"], err_msg=name)
        np.testing.assert_array_equal(ranks[0][f"initial/{name}"], single[f"initial/{name}"], err_msg=name)
        update = ranks[0][f"final/{name}"] - ranks[0][f"initial/{name}"]
        expected = single[f"final/{name}"] - single[f"initial/{name}"]
        assert np.abs(expected).max() > 0, name
        # Each side's new weights are rounded to float32, so their updates may differ by the spacing of
        # the largest weight (one unit in the last place) besides the summation order's relative error.
        atol = 1e-5 * np.abs(expected).max() + 2 * np.spacing(np.abs(single[f"final/{name}"]).max())
        np.testing.assert_allclose(update, expected, rtol=1e-4, atol=atol, err_msg=name)
        np.testing.assert_array_equal(ranks[0][f"ema/{name}"], ranks[1][f"ema/{name}"], err_msg=name)
        np.testing.assert_allclose(ranks[0][f"ema/{name}"] - ranks[0][f"initial/{name}"],  # the EMA's move: half the update
                                   single[f"ema/{name}"] - single[f"initial/{name}"], rtol=1e-4, atol=atol, err_msg=name)
    multi, one = read_metrics(tmp_path / "multi"), read_metrics(tmp_path / "single")
    assert len(multi) == 1 and multi[0]["global_step"] == 1  # only rank 0 writes; global batch 6 = 2 ranks x 3
    assert multi[0]["train_loss"] == pytest.approx(one[0]["train_loss"], rel=1e-5)
    assert multi[0]["val_top1"] == pytest.approx(one[0]["val_top1"])


@pytest.mark.slow
def test_nproc_spawns_ranks_with_the_launchers_results(tiny_lists, tmp_path):
    """--nproc 2 through paddle.distributed.spawn equals two processes started by the launcher, and with an
    EMA and gradient clipping both ranks end with the same weights and the same EMA."""
    recipe = ["--dropout", "0", "--aux-dropout", "0", "--epochs", "1", "--ema", "0.9", "--clip-grad-norm", "0.5"]
    ranks = run_worker(tmp_path, "launch", tiny_args(tiny_lists, tmp_path / "launch", *recipe), nproc=2)
    for key in ranks[0]:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "OMP_", "MKL_"))}
    spawned = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *tiny_args(tiny_lists, tmp_path / "spawn", *recipe, "--nproc", "2")],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert spawned.returncode == 0, spawned.stderr[-3000:]
    assert spawned.stdout.count("curves: visualdl") == 1  # only rank 0 prints
    checkpoint = load_checkpoint(tmp_path / "spawn" / "latest.pdckpt")
    for name, value in checkpoint["model"].items():
        np.testing.assert_allclose(value, ranks[0][f"final/{name}"], rtol=1e-5, atol=1e-6, err_msg=name)
    for name, value in checkpoint["ema"]["values"].items():
        np.testing.assert_allclose(value, ranks[0][f"ema/{name}"], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_googlenet_learns_the_real_digits(tmp_path):
    """The README's quick start, shortened to 3 of its 7 epochs (about 3 minutes on 2 cores).

    The first epochs are chaotic: float rounding alone (threads, kernels) moves the take-off by an epoch
    or so. The recorded quick start (docs/googlenet.md §9) was at 80 % after 3 epochs; chance is 10 %.
    """
    assert main(["googlenet", "--dataset", "digits", "--epochs", "3", "--output", str(tmp_path)]) == 0
    metrics = read_metrics(tmp_path)
    assert len(metrics) == 3
    assert max(m["val_top1"] for m in metrics) >= 0.5, [round(m["val_top1"], 3) for m in metrics]
    assert metrics[-1]["train_loss"] < 0.75 * metrics[0]["train_loss"], [round(m["train_loss"], 3) for m in metrics]



class SpoilWeightsAfterLastStep:
    """A callback that sets the classifier's bias to infinity after the epoch's last step (after its loss was checked)."""

    def on_step(self, run, state):
        if state.step_in_epoch == len(run.train_loader):
            run.model.fc.bias.set_value(np.full(run.model.fc.bias.shape, np.inf, np.float32))


def test_weights_that_diverge_before_evaluation_stop_the_run_in_one_line(tiny_lists, tmp_path, capsys):
    code = main(tiny_args(tiny_lists, tmp_path, "--epochs", "1"), callbacks=[SpoilWeightsAfterLastStep()])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1, err
    assert "outputs on the validation images became non-finite after epoch 1" in err and "lower --lr" in err
    assert not list(tmp_path.glob("*.pdckpt")) and read_metrics(tmp_path) == []
