"""The process set-up: importing the package changes nothing; ``configure_threads()`` sets MKL up before Paddle."""

import json
import os
import subprocess
import sys

import pytest

from paddle_googlenet.runtime import amd_cpu_with_avx2, quiet_stderr

MKL_VARIABLES = ("MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "OMP_NUM_THREADS")

REPORT = """
import json, os, sys
{setup}
print(json.dumps({{"paddle imported": "paddle" in sys.modules, "returned": returned,
                  "env": {{name: os.environ.get(name) for name in {names!r}}}}}))
"""


def run_fresh(setup, **env):
    """Run ``setup`` in a fresh interpreter without the MKL variables (plus ``env``); return its report."""
    clean = {name: value for name, value in os.environ.items() if name not in MKL_VARIABLES}
    code = REPORT.format(setup=setup, names=MKL_VARIABLES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env}, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_importing_the_package_imports_no_paddle_and_sets_nothing():
    report = run_fresh("import paddle_googlenet\nreturned = None")
    assert report["paddle imported"] is False and report["env"] == {name: None for name in MKL_VARIABLES}
    report = run_fresh("from paddle_googlenet.models import get_model\nreturned = None")
    assert report["env"]["MKL_NUM_THREADS"] is None and report["env"]["MKL_DEBUG_CPU_TYPE"] is None


def test_configure_threads_sets_the_thread_count_before_paddle():
    report = run_fresh("import paddle_googlenet\nreturned = paddle_googlenet.configure_threads(3)")
    assert report["returned"] == 3 and report["env"]["MKL_NUM_THREADS"] == "3"
    assert report["env"]["OMP_NUM_THREADS"] is None
    expected_kernels = "5" if amd_cpu_with_avx2() else None
    assert report["env"]["MKL_DEBUG_CPU_TYPE"] == expected_kernels


def test_variables_the_user_set_win():
    report = run_fresh("import paddle_googlenet\nreturned = paddle_googlenet.configure_threads(3)",
                       MKL_NUM_THREADS="1", MKL_DEBUG_CPU_TYPE="")
    assert report["returned"] == 1
    assert report["env"]["MKL_NUM_THREADS"] == "1" and report["env"]["MKL_DEBUG_CPU_TYPE"] == ""


def test_configure_threads_after_paddle_changes_nothing():
    report = run_fresh("import paddle, paddle_googlenet\nreturned = paddle_googlenet.configure_threads(3)")
    assert report["returned"] is None
    assert report["env"]["MKL_NUM_THREADS"] is None and report["env"]["MKL_DEBUG_CPU_TYPE"] is None


def cpuinfo_file(tmp_path, vendor, flags):
    """A /proc/cpuinfo of two processors; only the first block should be read."""
    block = f"processor\t: {{}}\nvendor_id\t: {vendor}\nmodel name\t: some CPU\nflags\t\t: {flags}\n\n"
    path = tmp_path / "cpuinfo"
    path.write_text(block.format(0) + block.format(1).replace(vendor, "GenuineIntel"))
    return path


@pytest.mark.parametrize("vendor, flags, expected", [
    ("AuthenticAMD", "fpu sse2 avx fma avx2 sha_ni", True),
    ("AuthenticAMD", "fpu sse2 avx", False),  # no AVX2: MKL's AVX2 kernels would not run
    ("GenuineIntel", "fpu sse2 avx fma avx2 avx512f", False),  # MKL chooses well on Intel by itself
    ("AuthenticAMD", "fpu sse2 avx2_like", False),
])
def test_amd_cpu_with_avx2_reads_the_first_processor(tmp_path, vendor, flags, expected):
    assert amd_cpu_with_avx2(cpuinfo_file(tmp_path, vendor, flags)) is expected


def test_amd_cpu_with_avx2_without_cpuinfo(tmp_path):
    assert amd_cpu_with_avx2(tmp_path / "missing") is False


def test_opencv_decodes_png_when_paddle_comes_after_the_package(tmp_path):
    """On Paddle 2.6, importing Paddle before NumPy breaks OpenCV's PNG decoder (a crash or "bad
    parameters to zlib"); the package is imported before Paddle everywhere, which must keep it working."""
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    path = tmp_path / "square.png"
    cv2.imwrite(str(path), np.full((8, 8, 3), 200, np.uint8))
    setup = ("import paddle_googlenet, paddle\n"
             "from paddle_googlenet.data.transforms import load_image\n"
             f"returned = load_image({str(path)!r}).tolist()")
    assert run_fresh(setup)["returned"] == np.full((8, 8, 3), 200).tolist()


def test_quiet_stderr_holds_back_native_output_unless_the_block_fails(capfd):
    def native_write(text):  # what C++ code does: write to file descriptor 2, past sys.stderr
        os.write(2, text.encode())

    with quiet_stderr():
        native_write("pass report\n")
        print("progress bar", file=sys.stderr)
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError, match="predictor failed"):
        with quiet_stderr():
            native_write("why it failed\n")
            raise RuntimeError("predictor failed")
    assert capfd.readouterr().err == "why it failed\n"
    native_write("after\n")
    assert capfd.readouterr().err == "after\n"
