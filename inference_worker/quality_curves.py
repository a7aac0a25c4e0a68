"""Measure the face-quality gate: accuracy against face size, sharpness and head pose.

::

    python -m inference_worker.quality_curves --data ../shared/data/fer2013/fer2013.csv.gz \
        --media ../shared/media --out runs/quality

For FER2013 PublicTest (where the thresholds are chosen) and PrivateTest (where they are
checked), clean and under every corruption and severity of :mod:`ml.robustness`, each face gets:

* ``face_px``: the longer side of the face box in pixels of the frame it was seen in: the
  frame's width (48, or the ``low_resolution`` width) divided by ``1 + DEFAULT_CROP_MARGIN``
  (1.2, :data:`inference_worker.pipeline.DEFAULT_CROP_MARGIN`: the 48-px FER2013 frame is
  framed like the worker's crop);
* ``sharpness`` and ``snr``: :func:`inference_worker.quality.sharpness` and
  :func:`~inference_worker.quality.snr` of the (corrupted) face (``low_resolution``: its
  sharpness at the shrunk size, as the worker measures a small crop);
* ``yaw_deg`` / ``pitch_deg``: BlazeFace (full range) run on the clean face scaled to 192 px,
  :func:`inference_worker.headpose.estimate_head_pose` of its keypoints (``None`` where
  BlazeFace finds no face); a corruption does not turn the head;
* whether the classifier (``--model``, default the shipped one) reads it right.

It writes ``quality.json`` (curves, and for the shipped gate the accuracy of assessed and
unassessed faces per split), ``quality_curves.png`` and, with ``--media``, the share of faces the
gate leaves unassessed in each shared media file (``room`` detection, frames sampled every
``--every`` frames) and the label mix of all and of assessed faces there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from contracts import QUALITY_ISSUES
from inference_worker.pipeline import DEFAULT_CROP_MARGIN
from inference_worker.quality import QualityGate, sharpness, snr_of_inputs
from ml.labels import EXPRESSIONS

SHARPNESS_EDGES = (0, 15, 30, 45, 60, 80, 100, 150, 200, 300, 500, 1e9)
POSE_EDGES = (0, 10, 20, 30, 45, 60, 90)
SNR_EDGES = (0, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 15, 1e9)


def _fer_poses(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw and pitch (degrees, ``nan`` where no face is found) of 48-px faces."""
    import cv2

    from inference_worker.blazeface import DETECTOR_MODELS, MODELS_DIR, MediaPipeFaceDetector
    from inference_worker.headpose import estimate_head_pose

    detector = MediaPipeFaceDetector(MODELS_DIR / DETECTOR_MODELS["full"], min_confidence=0.3)
    yaw = np.full(len(images), np.nan)
    pitch = np.full(len(images), np.nan)
    try:
        for i, face in enumerate(images):
            big = cv2.resize(face, (192, 192), interpolation=cv2.INTER_LINEAR)
            rgb = cv2.cvtColor(
                cv2.copyMakeBorder(big, 48, 48, 48, 48, cv2.BORDER_REPLICATE), cv2.COLOR_GRAY2RGB
            )
            found = sorted(detector.detect(rgb), key=lambda d: -d.score)
            pose = estimate_head_pose(found[0].keypoints) if found else None
            if pose is not None:
                yaw[i], pitch[i] = pose.yaw_deg, pose.pitch_deg
    finally:
        detector.close()
    return yaw, pitch


def _split_table(predict, images, labels, seed: int, progress: bool) -> dict[str, np.ndarray]:
    """One row per (set, face): face_px, sharpness, snr, correct, label, prediction, face index
    and set name (``"clean:0"``, ``"<corruption>:<severity>"``)."""
    import cv2
    from tqdm.auto import tqdm

    from ml.preprocessing import preprocess_faces
    from ml.robustness import CORRUPTIONS, SEVERITIES, corrupt, face_width_px

    sets = [("clean", 0)] + [(n, s) for n in CORRUPTIONS for s in SEVERITIES]
    cols: dict[str, list] = {
        "face_px": [],
        "sharpness": [],
        "snr": [],
        "correct": [],
        "index": [],
        "set": [],
        "label": [],
        "pred": [],
    }
    for name, sev in tqdm(sets, desc="quality sets", unit="set", disable=not progress):
        faces = images if name == "clean" else corrupt(images, name, sev, seed=seed)
        probs = np.concatenate([predict(faces[i : i + 512]) for i in range(0, len(faces), 512)])
        width = face_width_px(name, sev)
        cols["face_px"].append(np.full(len(faces), width / (1.0 + DEFAULT_CROP_MARGIN)))
        inputs = preprocess_faces(faces)
        if name == "low_resolution":
            # the worker measures a small crop at its own size: the shrunk face, before the
            # corruption scales it back up (albumentations' Downscale shrinks with INTER_AREA)
            side = int(width)
            native = [cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in images]
            cols["sharpness"].append(sharpness(native))
        else:
            cols["sharpness"].append(sharpness(faces))
        cols["snr"].append(snr_of_inputs(inputs))
        cols["correct"].append(probs.argmax(axis=1) == labels)
        cols["label"].append(labels)
        cols["pred"].append(probs.argmax(axis=1))
        cols["index"].append(np.arange(len(faces)))
        cols["set"].append(np.full(len(faces), f"{name}:{sev}"))
    return {k: np.concatenate(v) for k, v in cols.items()}


def _binned(values: np.ndarray, correct: np.ndarray, edges) -> list[dict]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (values >= lo) & (values < hi)
        out.append(
            {
                "from": lo,
                "to": hi,
                "n": int(m.sum()),
                "accuracy": float(correct[m].mean()) if m.any() else None,
            }
        )
    return out


def gate_issues(gate: QualityGate, table: dict, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """The gate's issue (or ``""``) for every row of a split table."""
    y = yaw[table["index"]]
    p = pitch[table["index"]]
    return np.array(
        [
            gate.issue(
                float(px),
                None if np.isnan(a) else float(a),
                None if np.isnan(b) else float(b),
                float(r),
                float(s),
            )
            or ""
            for px, a, b, r, s in zip(
                table["face_px"], y, p, table["snr"], table["sharpness"], strict=True
            )
        ]
    )


def _gate_report(table: dict, issues: np.ndarray) -> dict:
    """Accuracy of assessed and unassessed faces, and the issue counts, over a split table."""
    ok = issues == ""
    correct = table["correct"]
    degraded = table["set"] != "clean:0"
    rep = {}
    for name, mask in (("all sets", np.ones_like(ok)), ("corrupted sets", degraded)):
        a, u = mask & ok, mask & ~ok
        rep[name] = {
            "faces": int(mask.sum()),
            "assessed": int(a.sum()),
            "accuracy_all": float(correct[mask].mean()),
            "accuracy_assessed": float(correct[a].mean()) if a.any() else None,
            "accuracy_unassessed": float(correct[u].mean()) if u.any() else None,
            "issues": {k: int((issues[mask] == k).sum()) for k in QUALITY_ISSUES},
        }
    return rep


def _neutral_report(table: dict, issues: np.ndarray) -> dict:
    """Share of the NEUTRAL faces that the model reads as SAD: per set, and with the gate.

    Returns:
        ``{"per_set": {set: {"neutral_read_sad", "neutral_read_neutral", "predicted_sad"}},
        "all_sets": {"all", "assessed", "unassessed"}}``, shares in ``[0, 1]`` (``None`` when
        a group is empty).
    """
    neutral, sad = EXPRESSIONS.index("neutral"), EXPRESSIONS.index("sad")
    pred, label, sets = table["pred"], table["label"], table["set"]
    is_neutral = label == neutral
    ok = issues == ""

    def share(mask):
        return float(np.mean(pred[mask] == sad)) if mask.any() else None

    per_set = {}
    for name in dict.fromkeys(sets.tolist()):
        m = sets == name
        per_set[name] = {
            "neutral_read_sad": share(m & is_neutral),
            "neutral_read_neutral": float(np.mean(pred[m & is_neutral] == neutral)),
            "predicted_sad": float(np.mean(pred[m] == sad)),
        }
    return {
        "per_set": per_set,
        "all_sets": {
            "all": share(is_neutral),
            "assessed": share(is_neutral & ok),
            "unassessed": share(is_neutral & ~ok),
        },
    }


def _media(paths: list[Path], gate: QualityGate, every: int) -> dict:
    """Share of unassessed faces and label mixes on real media (``room`` detection)."""
    import cv2

    from inference_worker import pipeline, runtime

    detector = runtime.get_detector("room")
    classifier = runtime.get_classifier()
    measure_all = QualityGate(
        min_face_px=0, max_yaw_deg=180, max_pitch_deg=90, min_snr=0, min_sharpness=0
    )
    out = {}
    for path in paths:
        frames = []
        if path.suffix.lower() in {".jpg", ".jpeg", ".png"}:
            bgr = cv2.imread(str(path))
            if bgr is None:
                raise ValueError(f"{path}: not an image OpenCV can read")
            frames = [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)]
        else:
            cap = cv2.VideoCapture(str(path))
            k = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                if k % every == 0:
                    frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                k += 1
            cap.release()
        faces, labels_all, labels_ok, issues = 0, [], [], []
        for rgb in frames:
            h, w = rgb.shape[:2]
            analysis = pipeline.analyze_frame(rgb, detector, classifier, gate=measure_all)
            for f in analysis.faces:
                faces += 1
                px = max(f.box[2] * w, f.box[3] * h)
                issue = gate.issue(px, f.yaw_deg, f.pitch_deg, f.snr or 0.0, f.sharpness or 0.0)
                issues.append(issue or "")
                labels_all.append(f.label)
                if issue is None:
                    labels_ok.append(f.label)

        def mix(labels):
            n = len(labels)
            return {e: round(labels.count(e) / n, 3) for e in EXPRESSIONS} if n else {}

        out[path.name] = {
            "frames": len(frames),
            "faces": faces,
            "assessed": int(sum(i == "" for i in issues)),
            "unassessed_share": (sum(i != "" for i in issues) / faces) if faces else None,
            "issues": {k: issues.count(k) for k in QUALITY_ISSUES},
            "mix_all_faces": mix(labels_all),
            "mix_assessed_faces": mix(labels_ok),
        }
    runtime.clear()  # before interpreter shutdown, while MediaPipe can still close its graphs
    return out


def _plot(curves: dict, gate: QualityGate, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4), dpi=100)
    for split, c in curves.items():
        xs = [b["face_px"] for b in c["size"]]
        axes[0].plot(xs, [b["accuracy"] for b in c["size"]], "o-", label=split)
        mids = [
            (b["from"] + min(b["to"], 700)) / 2 for b in c["sharpness"] if b["accuracy"] is not None
        ]
        axes[1].semilogx(
            mids,
            [b["accuracy"] for b in c["sharpness"] if b["accuracy"] is not None],
            "o-",
            label=split,
        )
        mids = [(b["from"] + b["to"]) / 2 for b in c["yaw"] if b["accuracy"] is not None]
        axes[2].plot(
            mids, [b["accuracy"] for b in c["yaw"] if b["accuracy"] is not None], "o-", label=split
        )
    axes[0].axvline(gate.min_face_px, color="red", ls=":", label="gate")
    axes[1].axvline(gate.min_sharpness, color="red", ls=":", label="gate")
    axes[2].axvline(gate.max_yaw_deg, color="red", ls=":", label="gate")
    axes[3].axvline(gate.min_snr, color="red", ls=":", label="gate")
    titles = (
        ("face box side, px (clean + low_resolution)", "accuracy"),
        ("sharpness: variance of the Laplacian (no low_light, no low_resolution)", ""),
        ("|yaw|, degrees (clean faces)", ""),
        ("contrast-to-noise ratio (all sets)", ""),
    )
    for ax, (xl, yl) in zip(axes, titles, strict=True):
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("shipped classifier's accuracy against face quality (FER2013)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns 0, or 2 when the model or the data cannot be read."""
    from ml.datasets import DatasetError, load_fer2013
    from ml.inference import ExpressionClassifier

    p = argparse.ArgumentParser(
        prog="python -m inference_worker.quality_curves", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", default=None, help="classifier (default: the shipped one)")
    p.add_argument("--data", default=None, help="FER2013 csv (default $ENGAGEMENT_FER2013_CSV)")
    p.add_argument("--media", default=None, help="folder of real media to check the gate on")
    p.add_argument("--every", type=int, default=5, help="media: analyse every Nth frame")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    p.add_argument("--out", default="runs/quality", help="output folder")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        clf = ExpressionClassifier.load(a.model)
        data = load_fer2013(a.data)
    except (FileNotFoundError, ValueError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    gate = QualityGate()
    curves, gates, neutral = {}, {}, {}
    for split in ("PublicTest", "PrivateTest"):
        s = data[split]
        yaw, pitch = _fer_poses(s.images)
        t = _split_table(clf.predict_proba, s.images, s.labels, a.seed, not a.no_progress)
        size_rows = np.isin(t["set"], ["clean:0"]) | np.char.startswith(
            t["set"].astype(str), "low_resolution:"
        )
        clean = t["set"] == "clean:0"
        names = t["set"].astype(str)
        not_noisy = ~np.char.startswith(names, "low_light:") & ~np.char.startswith(
            names, "low_resolution:"
        )
        curves[split] = {
            "size": [
                {
                    "face_px": px,
                    "n": int(m.sum()),
                    "accuracy": float(t["correct"][m].mean()),
                }
                for px in sorted(set(t["face_px"][size_rows].tolist()), reverse=True)
                if (m := size_rows & (t["face_px"] == px)).any()
            ],
            "sharpness": _binned(
                t["sharpness"][not_noisy], t["correct"][not_noisy], SHARPNESS_EDGES
            ),
            "snr": _binned(t["snr"], t["correct"], SNR_EDGES),
            "yaw": _binned(np.abs(yaw[t["index"][clean]]), t["correct"][clean], POSE_EDGES),
            "pitch": _binned(np.abs(pitch[t["index"][clean]]), t["correct"][clean], POSE_EDGES),
            "pose_found": float(np.mean(~np.isnan(yaw))),
        }
        issues = gate_issues(gate, t, yaw, pitch)
        gates[split] = _gate_report(t, issues)
        neutral[split] = _neutral_report(t, issues)
        # derived numbers only (no pixels): for choosing thresholds without a rerun
        np.savez_compressed(out / f"table_{split}.npz", yaw=yaw, pitch=pitch, **t)
    media = {}
    if a.media:
        files = sorted(
            f
            for f in Path(a.media).iterdir()
            if f.suffix.lower() in {".gif", ".jpg", ".jpeg", ".png", ".mp4"}
        )
        try:
            media = _media(files, gate, a.every)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    report = {
        "gate": {
            "min_face_px": gate.min_face_px,
            "max_yaw_deg": gate.max_yaw_deg,
            "max_pitch_deg": gate.max_pitch_deg,
            "min_snr": gate.min_snr,
            "min_sharpness": gate.min_sharpness,
        },
        "curves": curves,
        "gate_on_fer2013": gates,
        "neutral_read_as_sad": neutral,
        "media": media,
        "command": "python -m inference_worker.quality_curves "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(curves, gate, out / "quality_curves.png")
    print(json.dumps({"gate": report["gate"], "gate_on_fer2013": gates}, indent=2))
    for split, rep in neutral.items():
        print(f"{split}: neutral faces read sad, per set:")
        for name, row in rep["per_set"].items():
            print(f"  {name:18s} {row['neutral_read_sad']:.3f}")
        print(f"  all sets: {json.dumps(rep['all_sets'])}")
    for name, m in media.items():
        print(f"{name}: {m['assessed']} of {m['faces']} faces assessed; {m['issues']}")
        print(f"  mix all {m['mix_all_faces']}\n  mix assessed {m['mix_assessed_faces']}")
    print(f"wrote {out}/quality.json, quality_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
