"""Image decoding and the preprocessing shared by training and inference.

Everything here works on NumPy arrays and needs neither Paddle nor a dataset, so ``infer.py`` can
rebuild the exact evaluation preprocessing from the ``preprocess`` dict stored in a checkpoint.

Images are HWC ``uint8`` RGB arrays until the last step, which turns them into CHW ``float32``
normalised with ``(pixel * scale - mean) / std``. Decoding and resizing use OpenCV when it is
installed (measured 2-2.5 times as fast as Pillow, see ``docs/performance.md``) and Pillow
otherwise (the two give slightly different pixels); both ignore EXIF orientation tags.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import cv2
except ImportError:  # OpenCV is optional: Pillow decodes and resizes in its absence
    cv2 = None

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # short side before cropping, relative to the crop (the legacy 256 -> 224)
BACKENDS = ("cv2", "pil") if cv2 is not None else ("pil",)
DEFAULT_BACKEND = BACKENDS[0]
_backend = DEFAULT_BACKEND  # used for decoding and resizing; see set_image_backend
CHANNEL_ORDERS = ("RGB", "BGR")

_PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
_CV2_FILTERS = (
    {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST} if cv2 else {}
)
_FLOWERS_NAMES_FILE = Path(__file__).with_name("flowers_names.txt")
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"  # markers; entropy-coded data never contains 0xFFD9


class ImageReadError(Exception):
    """An image file that cannot be read or decoded; ``str()`` names the path and the reason."""

    def __init__(self, path, reason):
        super().__init__(str(path), reason)  # both in args, so the exception pickles across processes
        self.path = str(path)
        self.reason = reason

    def __str__(self):
        return f"cannot read image {self.path}: {self.reason}"


def set_image_backend(backend):
    """Decode and resize with ``"cv2"`` (OpenCV, the default when installed) or ``"pil"`` (Pillow).

    Loader worker processes forked afterwards inherit the choice.
    """
    global _backend
    if backend not in BACKENDS:
        raise ValueError(f"unknown image backend {backend!r}; available: {', '.join(BACKENDS)}")
    _backend = backend


def get_image_backend():
    """The backend ``load_image`` and the transforms use: ``"cv2"`` or ``"pil"``."""
    return _backend


def load_image(path, backend=None):
    """Read an image file as an HWC ``uint8`` RGB array.

    Grayscale, palette, alpha (dropped, not composited), CMYK and 16-bit images all come back as
    3-channel 8-bit RGB. Raises ``ImageReadError`` for a missing, empty or undecodable file.
    """
    backend = backend or _backend
    if backend not in BACKENDS:
        raise ValueError(f"unknown image backend {backend!r}; available: {', '.join(BACKENDS)}")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ImageReadError(path, exc.strerror or str(exc)) from None
    if not data:
        raise ImageReadError(path, "the file is empty")
    if data.startswith(_JPEG_START) and data.rfind(_JPEG_END) == -1:  # older OpenCV decodes the part it has
        raise ImageReadError(path, "truncated JPEG (no end-of-image marker)")
    image = _decode_cv2(data) if backend == "cv2" else _decode_pil(data)
    if image is None:
        raise ImageReadError(path, f"not a decodable image ({len(data)} bytes, {backend} backend)")
    return image


def _decode_cv2(data):
    flags = cv2.IMREAD_COLOR_RGB if hasattr(cv2, "IMREAD_COLOR_RGB") else cv2.IMREAD_COLOR
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None
    if image is None or image.ndim != 3:
        return None
    if flags == cv2.IMREAD_COLOR:  # OpenCV < 4.11 decodes to BGR only
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def _decode_pil(data):
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return _pil_to_rgb_array(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _pil_to_rgb_array(image):
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grey: keep the top 8 bits, as OpenCV does
        grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("P", "PA", "LA") or "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"))


def make_preprocess(image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize_size=None):
    """The preprocessing description stored in checkpoints and export metadata.

    Args:
        image_size: side of the square crop fed to the network.
        mean, std: per-channel statistics in ``channel_order`` on the ``pixel * scale`` range.
        resize_size: short side before cropping; default ``round(image_size * 256 / 224)``.

    Returns a plain dict (JSON-serialisable) holding everything inference needs.
    """
    image_size = int(image_size)
    resize_size = round(image_size * RESIZE_RATIO) if resize_size is None else int(resize_size)
    if image_size < 1 or resize_size < image_size:
        raise ValueError(f"need 1 <= image_size <= resize_size, got image_size={image_size}, resize_size={resize_size}")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values each and std > 0, got mean={mean}, std={std}")
    return {
        "image_size": image_size,
        "resize_size": resize_size,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "channel_order": "RGB",
        "scale": 1 / 255,
        "interpolation": "bilinear",
    }


def resize_short_side(image, size, interpolation="bilinear"):
    """Resize so the shorter side is ``size``, keeping the aspect ratio (long side floored)."""
    height, width = image.shape[:2]
    if min(height, width) == size:
        return image
    if height <= width:
        new_height, new_width = size, max(size, int(width * size / height))
    else:
        new_height, new_width = max(size, int(height * size / width)), size
    if _backend == "cv2":
        return cv2.resize(image, (new_width, new_height), interpolation=_CV2_FILTERS[interpolation])
    return np.asarray(Image.fromarray(image).resize((new_width, new_height), _PIL_FILTERS[interpolation]))


class Normalize:
    """HWC uint8 (RGB) -> CHW float32 ``(pixel * scale - mean) / std`` in the configured channel order."""

    def __init__(self, preprocess):
        order = preprocess.get("channel_order", "RGB")
        if order not in CHANNEL_ORDERS:
            raise ValueError(f"unsupported channel_order {order!r}; expected one of {CHANNEL_ORDERS}")
        std = np.asarray(preprocess["std"], np.float32)
        self.reverse_channels = order == "BGR"
        self.gain = (np.float32(preprocess["scale"]) / std).reshape(3, 1, 1)
        self.offset = (-np.asarray(preprocess["mean"], np.float32) / std).reshape(3, 1, 1)

    def into(self, image, out):
        """Write the normalised ``image`` into the CHW float32 array ``out`` (e.g. a slot of a batch)."""
        if self.reverse_channels:
            image = image[:, :, ::-1]
        np.multiply(image.transpose(2, 0, 1), self.gain, out=out)
        out += self.offset
        return out

    def __call__(self, image):
        return self.into(image, np.empty((3, *image.shape[:2]), np.float32))


class _Transform:
    """The geometric part (``geometry``: HWC uint8 in, HWC uint8 crop out), then ``normalize``."""

    def __init__(self, preprocess):
        self.image_size = int(preprocess["image_size"])
        self.resize_size = int(preprocess["resize_size"])
        self.interpolation = preprocess.get("interpolation", "bilinear")
        if self.interpolation not in _PIL_FILTERS:
            raise ValueError(f"unsupported interpolation {self.interpolation!r}; expected one of {tuple(_PIL_FILTERS)}")
        self.normalize = Normalize(preprocess)

    def _resize(self, image):
        return resize_short_side(image, self.resize_size, self.interpolation)

    def _crop(self, image, top, left):
        return image[top : top + self.image_size, left : left + self.image_size]


class EvalTransform(_Transform):
    """Resize the short side to ``resize_size``, centre-crop ``image_size``, normalise."""

    def geometry(self, image):
        image = self._resize(image)
        height, width = image.shape[:2]
        return self._crop(image, (height - self.image_size) // 2, (width - self.image_size) // 2)

    def __call__(self, image):
        return self.normalize(self.geometry(image))


class TrainTransform(_Transform):
    """Resize the short side, random ``image_size`` crop, optional horizontal flip, normalise.

    All randomness comes from the ``rng`` argument, so a sample's augmentation is reproducible.
    """

    def __init__(self, preprocess, hflip):
        super().__init__(preprocess)
        self.hflip = bool(hflip)

    def geometry(self, image, rng):
        image = self._resize(image)
        height, width = image.shape[:2]
        top = int(rng.integers(0, height - self.image_size + 1))
        left = int(rng.integers(0, width - self.image_size + 1))
        image = self._crop(image, top, left)
        if self.hflip and rng.random() < 0.5:
            image = image[:, ::-1]
        return image

    def __call__(self, image, rng):
        return self.normalize(self.geometry(image, rng))


def build_eval_transform(preprocess):
    """``f(HWC uint8 RGB) -> CHW float32``: resize short side, centre crop, normalise."""
    return EvalTransform(preprocess)


def build_train_transform(preprocess, hflip):
    """``f(HWC uint8 RGB, np.random.Generator) -> CHW float32``: resize, random crop, flip, normalise."""
    return TrainTransform(preprocess, hflip)


def denormalize(chw, preprocess):
    """Undo the normalisation of one CHW image: back to HWC ``uint8`` RGB (for image logging)."""
    chw = np.asarray(chw, np.float32)
    mean = np.asarray(preprocess["mean"], np.float32).reshape(3, 1, 1)
    std = np.asarray(preprocess["std"], np.float32).reshape(3, 1, 1)
    pixels = (chw * std + mean) / np.float32(preprocess["scale"])
    hwc = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if preprocess.get("channel_order", "RGB") == "BGR":
        hwc = hwc[:, :, ::-1]
    return np.ascontiguousarray(hwc)


def flowers_class_names():
    """The 102 Oxford Flowers category names; list index = 0-based label."""
    names = _FLOWERS_NAMES_FILE.read_text(encoding="utf-8").splitlines()
    if len(names) != 102:
        raise RuntimeError(f"{_FLOWERS_NAMES_FILE} should hold 102 names, found {len(names)}; reinstall the package")
    return names
