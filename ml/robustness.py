"""A corruption suite for face crops: how a classroom camera degrades a face, at 3 severities.

Each corruption is a pipeline of `albumentations <https://albumentations.ai>`_ transforms with
fixed parameters per severity (only the random parts a real camera has, such as the noise
pattern, the blur direction, the sign of a rotation or where an occluder falls, are drawn, from
one seeded generator per run), applied to the ``uint8`` ``(N, 48, 48)`` gray faces of FER2013.
The design follows Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations" (ICLR 2019): several corruption types, each at increasing
severity, and the mean drop from clean accuracy as the summary. The types and severities are
chosen for a classroom:

==================  ==============================================================  ===========================
name                what                                                            severities 1 / 2 / 3
==================  ==============================================================  ===========================
``low_light``       intensity scaled down, then Gaussian sensor noise               x0.5 σ=0.02 / x0.35 σ=0.04 / x0.25 σ=0.06
``overexposure``    washed out: contrast scaled down, brightness added              -30% +0.2 / -50% +0.35 / -70% +0.5
``defocus``         disc (defocus) blur                                             radius 2 / 3 / 4 px
``motion_blur``     linear motion blur, random direction                            kernel 5 / 7 / 9 px
``jpeg``            JPEG compression                                                quality 30 / 15 / 8
``low_resolution``  a far face: shrunk (area) and scaled back up (bilinear)         24 / 16 / 12 px wide
``rotation``        in-plane head roll, random sign, reflected border               10 / 20 / 30 degrees
``occlusion``       one flat patch of a random gray (a hand, a cup, a microphone)   25% / 35% / 45% of the side
==================  ==============================================================  ===========================

Noise σ and brightness are fractions of 255; sizes are on the 48-px face. ``low_resolution``'s
widths are those of the whole 48-px FER2013 frame, whose face box is about 1/1.2 of it (see
``inference_worker.pipeline.DEFAULT_CROP_MARGIN``).

Use :func:`corrupt` for one corruption and severity; :data:`CORRUPTIONS` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ml.calibration import apply_temperature, expected_calibration_error, negative_log_likelihood
from ml.labels import EXPRESSIONS
from ml.metrics import classification_report

__all__ = [
    "CORRUPTIONS",
    "SEVERITIES",
    "Corruption",
    "corrupt",
    "face_width_px",
    "format_markdown",
    "import_albumentations",
    "plot_examples",
    "run_suite",
]

SEVERITIES: tuple[int, ...] = (1, 2, 3)
"""Severity levels, mildest first."""


@dataclass(frozen=True)
class Corruption:
    """One corruption type of the suite.

    Attributes:
        name: identifier used on the command line and in reports.
        description: one line, for the Markdown table.
        levels: one human-readable parameter string per severity (``len(SEVERITIES)``).
        build: severity (1-based) -> an ``albumentations`` transform that always applies.
    """

    name: str
    description: str
    levels: tuple[str, ...]
    build: Callable[[int], object]


def import_albumentations():
    """``albumentations``, or an ImportError that says which extra installs it."""
    try:
        import albumentations as A  # noqa: N812 (the library's own convention)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the corruption suite and robust augmentation need albumentations: "
            "pip install -e '.[ml]'"
        ) from exc
    return A


def _low_light(severity: int):
    A = import_albumentations()  # noqa: N806
    scale, sigma = {1: (0.5, 0.02), 2: (0.35, 0.04), 3: (0.25, 0.06)}[severity]
    return A.Compose(
        [
            # contrast c multiplies: out = img * (1 + c)
            A.RandomBrightnessContrast(
                brightness_limit=(0.0, 0.0), contrast_limit=(scale - 1, scale - 1), p=1.0
            ),
            A.GaussNoise(std_range=(sigma, sigma), p=1.0),
        ]
    )


def _overexposure(severity: int):
    A = import_albumentations()  # noqa: N806
    contrast, brightness = {1: (-0.3, 0.2), 2: (-0.5, 0.35), 3: (-0.7, 0.5)}[severity]
    return A.RandomBrightnessContrast(
        brightness_limit=(brightness, brightness), contrast_limit=(contrast, contrast), p=1.0
    )


def _defocus(severity: int):
    A = import_albumentations()  # noqa: N806
    radius = {1: 2, 2: 3, 3: 4}[severity]
    return A.Defocus(radius=(radius, radius), alias_blur=(0.1, 0.1), p=1.0)


def _motion_blur(severity: int):
    A = import_albumentations()  # noqa: N806
    kernel = {1: 5, 2: 7, 3: 9}[severity]
    return A.MotionBlur(blur_limit=(kernel, kernel), allow_shifted=False, p=1.0)


def _jpeg(severity: int):
    A = import_albumentations()  # noqa: N806
    quality = {1: 30, 2: 15, 3: 8}[severity]
    return A.ImageCompression(compression_type="jpeg", quality_range=(quality, quality), p=1.0)


LOW_RESOLUTION_WIDTHS: dict[int, int] = {1: 24, 2: 16, 3: 12}
"""Width in pixels of the shrunk 48-px frame per ``low_resolution`` severity."""


def _low_resolution(severity: int):
    import cv2

    A = import_albumentations()  # noqa: N806
    scale = LOW_RESOLUTION_WIDTHS[severity] / 48.0
    return A.Downscale(
        scale_range=(scale, scale),
        interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
        p=1.0,
    )


def _rotation(severity: int):
    import cv2

    A = import_albumentations()  # noqa: N806
    angle = {1: 10.0, 2: 20.0, 3: 30.0}[severity]
    return A.OneOf(
        [
            A.Rotate(limit=(a, a), border_mode=cv2.BORDER_REFLECT_101, p=1.0)
            for a in (-angle, angle)
        ],
        p=1.0,
    )


def _occlusion(severity: int):
    A = import_albumentations()  # noqa: N806
    side = {1: 0.25, 2: 0.35, 3: 0.45}[severity]
    return A.CoarseDropout(
        num_holes_range=(1, 1),
        hole_height_range=(side, side),
        hole_width_range=(side, side),
        fill="random_uniform",
        p=1.0,
    )


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption(
            "low_light",
            "dim room: intensity scaled down, Gaussian sensor noise",
            ("x0.5, σ=0.02", "x0.35, σ=0.04", "x0.25, σ=0.06"),
            _low_light,
        ),
        Corruption(
            "overexposure",
            "washed out: lower contrast, brighter",
            ("-30%, +0.2", "-50%, +0.35", "-70%, +0.5"),
            _overexposure,
        ),
        Corruption("defocus", "out of focus (disc blur)", ("r=2", "r=3", "r=4"), _defocus),
        Corruption("motion_blur", "moving head or camera", ("5 px", "7 px", "9 px"), _motion_blur),
        Corruption("jpeg", "JPEG compression", ("q=30", "q=15", "q=8"), _jpeg),
        Corruption(
            "low_resolution",
            "a far face, shrunk and scaled back up",
            tuple(f"{LOW_RESOLUTION_WIDTHS[s]} px" for s in SEVERITIES),
            _low_resolution,
        ),
        Corruption("rotation", "in-plane head roll", ("10°", "20°", "30°"), _rotation),
        Corruption(
            "occlusion",
            "a hand or an object over the face",
            ("25%", "35%", "45%"),
            _occlusion,
        ),
    )
}
"""The suite, by name, in report order."""


def corrupt(images: np.ndarray, name: str, severity: int, *, seed: int = 0) -> np.ndarray:
    """Apply one corruption at one severity to a batch of gray faces.

    Deterministic: the same images, name, severity and seed give the same output (one
    ``albumentations.Compose(seed=seed)`` per call, images processed in order).

    Args:
        images: ``uint8`` ``(N, H, W)`` gray faces (FER2013: 48x48).
        name: a key of :data:`CORRUPTIONS`.
        severity: one of :data:`SEVERITIES`.
        seed: seed of the random parts (noise, blur direction, rotation sign, patch place).

    Returns:
        ``uint8`` ``(N, H, W)``, a new array.

    Raises:
        KeyError: unknown ``name``.
        ValueError: ``severity`` not in :data:`SEVERITIES`, or ``images`` not ``uint8 (N, H, W)``.
    """
    if name not in CORRUPTIONS:
        raise KeyError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"expected uint8 (N, H, W) faces, got {images.dtype} {images.shape}")
    A = import_albumentations()  # noqa: N806
    pipeline = A.Compose([CORRUPTIONS[name].build(severity)], seed=seed)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i] = np.asarray(pipeline(image=image)["image"]).reshape(image.shape)
    return out


def face_width_px(name: str, severity: int, native_px: float = 48.0) -> float:
    """Width in pixels of the frame a corrupted FER2013 face was seen at.

    ``low_resolution`` shrinks the face to :data:`LOW_RESOLUTION_WIDTHS`; every other
    corruption (and the clean face, ``name="clean"``) keeps ``native_px``.
    """
    if name == "low_resolution":
        return float(LOW_RESOLUTION_WIDTHS[severity])
    return float(native_px)


def _scores(
    probabilities: np.ndarray, labels: np.ndarray, temperature: float | None = None
) -> dict[str, float]:
    rep = classification_report(labels, probabilities.argmax(axis=1), EXPRESSIONS)
    scores = {
        "accuracy": rep["accuracy"],
        "macro_f1": rep["macro_f1"],
        "ece": expected_calibration_error(probabilities, labels),
        "nll": negative_log_likelihood(probabilities, labels),
    }
    if temperature is not None:
        scores["ece_at_temperature"] = expected_calibration_error(
            apply_temperature(probabilities, temperature), labels
        )
    return scores


def run_suite(
    predictors: dict[str, Callable[[np.ndarray], np.ndarray]],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    names: tuple[str, ...] | None = None,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = True,
    temperatures: dict[str, float] | None = None,
) -> dict[str, dict]:
    """Score every predictor on the clean faces and on every corruption and severity.

    Each corrupted set is made once (:func:`corrupt` with ``seed``) and shown to every
    predictor, so models are compared on the same pixels.

    Args:
        predictors: ``{row name: uint8 (B, H, W) -> float32 (B, 7) probabilities}``.
        images: ``uint8`` ``(N, H, W)`` faces (PrivateTest for reporting).
        labels: ``int`` ``(N,)``.
        names: corruptions to run (default all of :data:`CORRUPTIONS`, in order).
        seed: see :func:`corrupt`.
        batch_size: faces per predictor call.
        progress: show a tqdm bar (one step per corrupted set).
        temperatures: ``{row: T}``; for those rows every cell also gets the ECE after
            :func:`ml.calibration.apply_temperature` (a temperature fitted elsewhere, e.g. on
            PublicTest), and the row ``middle_severity_ece_at_temperature``.

    Returns:
        ``{row: {"clean": scores, "corruptions": {name: {"1"|"2"|"3": scores}},
        "mean_accuracy", "mean_drop_points", "mean_macro_f1", "mean_ece",
        "middle_severity_ece"}}`` where ``scores = {"accuracy", "macro_f1", "ece", "nll"}``
        (+ ``"ece_at_temperature"``); ``mean_drop_points`` is ``100 * (clean accuracy - mean
        corrupted accuracy)``.

    Raises:
        KeyError: an unknown corruption name.
    """
    from tqdm.auto import tqdm

    names = tuple(CORRUPTIONS) if names is None else tuple(names)
    for name in names:
        if name not in CORRUPTIONS:
            raise KeyError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    labels = np.asarray(labels)

    def predict_all(predict, faces):
        parts = [predict(faces[i : i + batch_size]) for i in range(0, len(faces), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 7), np.float32)

    temperatures = temperatures or {}
    out: dict[str, dict] = {
        row: {
            "clean": _scores(predict_all(p, images), labels, temperatures.get(row)),
            "corruptions": {},
        }
        for row, p in predictors.items()
    }
    steps = [(n, s) for n in names for s in SEVERITIES]
    for name, severity in tqdm(steps, desc="corruption suite", unit="set", disable=not progress):
        faces = corrupt(images, name, severity, seed=seed)
        for row, predict in predictors.items():
            scores = _scores(predict_all(predict, faces), labels, temperatures.get(row))
            out[row]["corruptions"].setdefault(name, {})[str(severity)] = scores
    for rep in out.values():
        cells = [s for sev in rep["corruptions"].values() for s in sev.values()]
        middle = [sev["2"] for sev in rep["corruptions"].values() if "2" in sev]
        if cells:
            rep["mean_accuracy"] = float(np.mean([c["accuracy"] for c in cells]))
            rep["mean_drop_points"] = 100.0 * (rep["clean"]["accuracy"] - rep["mean_accuracy"])
            rep["mean_macro_f1"] = float(np.mean([c["macro_f1"] for c in cells]))
            rep["mean_ece"] = float(np.mean([c["ece"] for c in cells]))
            rep["middle_severity_ece"] = float(np.mean([c["ece"] for c in middle]))
            if "ece_at_temperature" in rep["clean"]:
                rep["middle_severity_ece_at_temperature"] = float(
                    np.mean([c["ece_at_temperature"] for c in middle])
                )
    return out


def format_markdown(results: dict[str, dict]) -> str:
    """The suite's results as a Markdown table: one row per corruption and severity.

    Columns per model: accuracy, macro-F1 and ECE in percent; the first rows are the clean
    faces, the last the mean over the corrupted sets and the mean drop in points.
    """
    rows = list(results)
    head = ["corruption", "severity"]
    for row in rows:
        head += [f"{row} acc.", f"{row} macro-F1", f"{row} ECE"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(scores):
        return [
            f"{100 * scores['accuracy']:.1f}",
            f"{100 * scores['macro_f1']:.1f}",
            f"{100 * scores['ece']:.1f}",
        ]

    line = ["clean", "-"]
    for row in rows:
        line += cells(results[row]["clean"])
    lines.append("| " + " | ".join(line) + " |")
    first = results[rows[0]]["corruptions"] if rows else {}
    for name, severities in first.items():
        for sev in severities:
            level = CORRUPTIONS[name].levels[int(sev) - 1]
            line = [name, f"{sev} ({level})"]
            for row in rows:
                line += cells(results[row]["corruptions"][name][sev])
            lines.append("| " + " | ".join(line) + " |")
    if rows and "mean_accuracy" in results[rows[0]]:
        line = ["**mean of corrupted sets**", "-"]
        for row in rows:
            r = results[row]
            line += [
                f"{100 * r['mean_accuracy']:.1f}",
                f"{100 * r['mean_macro_f1']:.1f}",
                f"{100 * r['mean_ece']:.1f}",
            ]
        lines.append("| " + " | ".join(line) + " |")
        line = ["**mean drop (points of accuracy)**", "-"]
        for row in rows:
            line += [f"{results[row]['mean_drop_points']:.1f}", "", ""]
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines) + "\n"


def plot_examples(
    images: np.ndarray, path, *, seed: int = 0, names: tuple[str, ...] | None = None
) -> None:
    """Save a grid PNG: a few faces, clean and under each corruption at each severity.

    Args:
        images: ``uint8`` ``(n, H, W)``, a handful of faces (the columns).
        path: PNG file to write.
        seed: see :func:`corrupt`.
        names: corruptions to show (default all).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = tuple(CORRUPTIONS) if names is None else tuple(names)
    grid = [("clean", images)] + [
        (f"{n} {s}", corrupt(images, n, s, seed=seed)) for n in names for s in SEVERITIES
    ]
    fig, axes = plt.subplots(
        len(grid),
        len(images),
        figsize=(1.1 * len(images), 1.1 * len(grid)),
        dpi=90,
        squeeze=False,
    )
    for r, (title, faces) in enumerate(grid):
        for c, face in enumerate(faces):
            ax = axes[r][c]
            ax.imshow(face, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
