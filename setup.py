"""Install with ``pip install -e ".[cpu]"`` (CPU PaddlePaddle) or ``pip install -e .`` next to ``paddlepaddle-gpu``."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="paddle-googlenet",
    version="0.1.0",
    description="GoogLeNet (with auxiliary heads), AlexNet, VGG and ResNet from the legacy paddle.v2 code, on PaddlePaddle 3.x",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["paddle_googlenet", "paddle_googlenet.*"]),
    package_data={"paddle_googlenet": ["data/*.txt"]},
    # PaddlePaddle itself is not required here: users choose `paddlepaddle` (the `cpu` extra) or `paddlepaddle-gpu`.
    install_requires=[
        "numpy>=1.21",
        "scipy>=1.7",
        "scikit-learn>=1.0",
        "opencv-python-headless>=4.5",
        "Pillow>=8.0",
        "visualdl>=2.5.3,<2.6",  # vdl_records.py relies on its record format and file order
    ],
    extras_require={
        "cpu": ["paddlepaddle>=2.6.2"],
        "onnx": ["paddle2onnx>=1.2", "onnxruntime>=1.16"],  # python -m paddle_googlenet.export --onnx
        "safetensors": ["safetensors>=0.4"],  # export --safetensors, train.py --pretrained *.safetensors
        "openvino": ["openvino>=2023.1"],  # benchmarks/bench_inference.py's OpenVINO engine
        "test": ["pytest>=7", "paddle2onnx>=1.2", "onnxruntime>=1.16", "safetensors>=0.4"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
