/*
 * The worker's face pipeline after detection, for the browser of an on-device session: crop
 * (with the eyes levelled), gray 48x48 input, head pose, the face-quality gate, softmax, and the
 * numbers message of contracts/device.py. Pure functions on typed arrays: no DOM, no model.
 *
 * Every number comes from the page's config (`definition`: contracts.pipeline.pipeline_definition()),
 * the same source the worker reads, and every function names the Python one it mirrors:
 *
 *   rgbaToGray      cv2.cvtColor(RGB2GRAY) (fixed point, 14 bits)        ml.preprocessing.to_gray
 *   alignedCrop     slice, or cv2.warpAffine bilinear + BORDER_REPLICATE   ml.preprocessing.aligned_crop
 *   resizeTo        cv2.resize INTER_AREA (shrinking) / INTER_LINEAR       ml.preprocessing.preprocess_faces
 *   headPose        closed-form yaw/pitch from BlazeFace keypoints         inference_worker.headpose
 *   snrOfInput      Immerkaer's noise estimate                             inference_worker.quality.snr_of_inputs
 *   sharpness       variance of the Laplacian                              inference_worker.quality.sharpness
 *   analyseFaces    the crop and gate stages of                            inference_worker.pipeline.analyze_frame
 *
 * Images are {width, height, data} with data a Uint8Array (gray, one byte per pixel) or a
 * Uint8ClampedArray of RGBA (ImageData). Pixel coordinates: top-left origin, x right, y down.
 */

/** Round half to even, as Python's round() (the crop's corner uses it). */
export function roundHalfEven(x) {
  var r = Math.round(x);
  return (Math.abs(x % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

/**
 * RGBA pixels to gray with OpenCV's fixed-point RGB2GRAY: (4899 R + 9617 G + 1868 B + 8192) >> 14
 * (ITU-R BT.601 weights 0.299, 0.587, 0.114 in 14-bit fixed point; opencv imgproc color.hpp).
 * @param {{width:number,height:number,data:Uint8ClampedArray}} rgba ImageData-like, 4 bytes per pixel.
 * @returns {{width:number,height:number,data:Uint8Array}} gray image.
 */
export function rgbaToGray(rgba) {
  var n = rgba.width * rgba.height;
  var out = new Uint8Array(n);
  var d = rgba.data;
  for (var i = 0, j = 0; i < n; i += 1, j += 4) {
    out[i] = (d[j] * 4899 + d[j + 1] * 9617 + d[j + 2] * 1868 + 8192) >> 14;
  }
  return { width: rgba.width, height: rgba.height, data: out };
}

/** In-plane roll of the eye line, degrees (ml.preprocessing.eye_roll_deg). */
export function eyeRollDeg(rightEye, leftEye) {
  return Math.atan2(leftEye[1] - rightEye[1], leftEye[0] - rightEye[0]) * 180 / Math.PI;
}

function clampIndex(v, n) { return v < 0 ? 0 : (v >= n ? n - 1 : v); }

/**
 * The square crop of ml.preprocessing.aligned_crop on a gray image: side max(w, h) * (1 + margin)
 * around the box centre, rotated by rollDeg about it so the eyes come out level; outside the image
 * the border pixels repeat. Plain slicing when there is no roll and the square is inside.
 * @param {{width,height,data:Uint8Array}} gray the frame, gray.
 * @param {number[]} box [x, y, w, h] pixels, w, h > 0.
 * @param {number} margin >= 0.
 * @param {number} rollDeg degrees.
 * @returns {{width,height,data:Uint8Array}|null} the S x S crop, or null when the square has no
 *   pixel inside the image (the worker's ValueError).
 */
export function alignedCrop(gray, box, margin, rollDeg) {
  var x = box[0], y = box[1], w = box[2], h = box[3];
  if (!(w > 0 && h > 0) || margin < 0) { return null; }
  var side = Math.max(w, h) * (1 + margin);
  var size = Math.max(1, roundHalfEven(side));
  var cx = x + w / 2, cy = y + h / 2;
  var W = gray.width, H = gray.height, src = gray.data;
  if (cx + side / 2 <= 0 || cy + side / 2 <= 0 || cx - side / 2 >= W || cy - side / 2 >= H) {
    return null;
  }
  var x0 = roundHalfEven(cx - side / 2), y0 = roundHalfEven(cy - side / 2);
  var out = new Uint8Array(size * size);
  if (rollDeg === 0 && x0 >= 0 && y0 >= 0 && x0 + size <= W && y0 + size <= H) {
    for (var r = 0; r < size; r += 1) {
      out.set(src.subarray((y0 + r) * W + x0, (y0 + r) * W + x0 + size), r * size);
    }
    return { width: size, height: size, data: out };
  }
  // Output (u, v) samples the image at c + R(roll) ((u, v) - c_out), pixel centres at index + 0.5
  // (the inverse map aligned_crop gives cv2.warpAffine), bilinear, coordinates on OpenCV's
  // 1/32-pixel grid (INTER_BITS = 5), borders replicated.
  var theta = rollDeg * Math.PI / 180;
  var cos = Math.cos(theta), sin = Math.sin(theta);
  var half = (size - 1) / 2;
  var ox = cx - 0.5 - cos * half + sin * half;
  var oy = cy - 0.5 - sin * half - cos * half;
  for (var v = 0; v < size; v += 1) {
    for (var u = 0; u < size; u += 1) {
      var sx = Math.round((cos * u - sin * v + ox) * 32) / 32;
      var sy = Math.round((sin * u + cos * v + oy) * 32) / 32;
      var ix = Math.floor(sx), iy = Math.floor(sy);
      var fx = sx - ix, fy = sy - iy;
      var xa = clampIndex(ix, W), xb = clampIndex(ix + 1, W);
      var ya = clampIndex(iy, H), yb = clampIndex(iy + 1, H);
      var top = src[ya * W + xa] * (1 - fx) + src[ya * W + xb] * fx;
      var bottom = src[yb * W + xa] * (1 - fx) + src[yb * W + xb] * fx;
      out[v * size + u] = Math.round(top * (1 - fy) + bottom * fy);
    }
  }
  return { width: size, height: size, data: out };
}

/** OpenCV's area-resize weights along one axis (imgproc resize.cpp, computeResizeAreaTab). */
function areaTable(ssize, dsize) {
  var scale = ssize / dsize;
  var table = [];
  for (var dx = 0; dx < dsize; dx += 1) {
    var fsx1 = dx * scale, fsx2 = fsx1 + scale;
    var cellWidth = Math.min(scale, ssize - fsx1);
    var sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    var taps = [];
    if (sx1 - fsx1 > 1e-3) { taps.push([sx1 - 1, (sx1 - fsx1) / cellWidth]); }
    for (var sx = sx1; sx < sx2; sx += 1) { taps.push([sx, 1 / cellWidth]); }
    if (fsx2 - sx2 > 1e-3) {
      taps.push([sx2, Math.min(Math.min(fsx2 - sx2, 1), cellWidth) / cellWidth]);
    }
    table.push(taps);
  }
  return table;
}

/**
 * Resize a gray image to size x size as ml.preprocessing.preprocess_faces does: INTER_AREA when
 * shrinking along either side, INTER_LINEAR (half-pixel centres) otherwise; unchanged at size.
 * @returns {{width,height,data:Uint8Array}}
 */
export function resizeTo(gray, size) {
  var W = gray.width, H = gray.height, src = gray.data;
  if (W === size && H === size) { return gray; }
  var out = new Uint8Array(size * size);
  if (W > size || H > size) {
    var tx = areaTable(W, size), ty = areaTable(H, size);
    for (var dy = 0; dy < size; dy += 1) {
      for (var dx = 0; dx < size; dx += 1) {
        var sum = 0;
        for (var a = 0; a < ty[dy].length; a += 1) {
          var row = ty[dy][a][0] * W, wy = ty[dy][a][1];
          for (var b = 0; b < tx[dx].length; b += 1) {
            sum += src[row + tx[dx][b][0]] * wy * tx[dx][b][1];
          }
        }
        out[dy * size + dx] = Math.min(255, Math.max(0, Math.round(sum)));
      }
    }
  } else {
    var sxScale = W / size, syScale = H / size;
    for (var y = 0; y < size; y += 1) {
      var fy = (y + 0.5) * syScale - 0.5, iy = Math.floor(fy);
      fy -= iy;
      if (iy < 0) { iy = 0; fy = 0; }
      if (iy >= H - 1) { iy = H - 1; fy = 0; }
      var iy1 = Math.min(iy + 1, H - 1);
      for (var x = 0; x < size; x += 1) {
        var fx = (x + 0.5) * sxScale - 0.5, ix = Math.floor(fx);
        fx -= ix;
        if (ix < 0) { ix = 0; fx = 0; }
        if (ix >= W - 1) { ix = W - 1; fx = 0; }
        var ix1 = Math.min(ix + 1, W - 1);
        var top = src[iy * W + ix] * (1 - fx) + src[iy * W + ix1] * fx;
        var bottom = src[iy1 * W + ix] * (1 - fx) + src[iy1 * W + ix1] * fx;
        out[y * size + x] = Math.round(top * (1 - fy) + bottom * fy);
      }
    }
  }
  return { width: size, height: size, data: out };
}

/**
 * Yaw and pitch from BlazeFace's 6 keypoints (inference_worker.headpose.estimate_head_pose).
 * @param {number[][]} kp 6 [x, y] pixels: right eye, left eye, nose tip, mouth, right ear, left ear.
 * @param {object} hp definition.head_pose.
 * @returns {{yaw_deg:number,pitch_deg:number}|null} degrees, or null when degenerate.
 */
export function headPose(kp, hp) {
  if (!kp || kp.length !== 6) { return null; }
  for (var i = 0; i < 6; i += 1) {
    if (!isFinite(kp[i][0]) || !isFinite(kp[i][1])) { return null; }
  }
  var mx = (kp[0][0] + kp[1][0]) / 2, my = (kp[0][1] + kp[1][1]) / 2;
  var dx = kp[1][0] - kp[0][0], dy = kp[1][1] - kp[0][1];
  if (Math.hypot(dx, dy) < 1e-6) { return null; }
  var roll = Math.atan2(dy, dx);
  var c = Math.cos(-roll), s = Math.sin(-roll);
  var up = kp.map(function (p) {
    var px = p[0] - mx, py = p[1] - my;
    return [c * px - s * py, s * px + c * py];
  });
  var nose = up[2], mouth = up[3];
  var ratios = [];
  [[up[0], up[1]], [up[4], up[5]]].forEach(function (pair) {
    var width = pair[1][0] - pair[0][0];
    if (width > 1e-6) { ratios.push((nose[0] - (pair[1][0] + pair[0][0]) / 2) / width); }
  });
  if (!ratios.length) { return null; }
  var mean = ratios.reduce(function (a, b) { return a + b; }, 0) / ratios.length;
  var yaw = Math.atan(hp.yaw_gain * mean) * 180 / Math.PI;
  var height = mouth[1];
  if (height < 1e-6) { return null; }
  var ratio = nose[1] / height;
  var pitch = Math.atan2(hp.frontal_nose_ratio - ratio, hp.nose_depth - hp.mouth_depth * ratio) * 180 / Math.PI;
  if (!(pitch > -90 && pitch < 90)) { return null; }
  return { yaw_deg: yaw, pitch_deg: pitch };
}

/** Contrast-to-noise ratio of a 48x48 gray input (inference_worker.quality.snr_of_inputs). */
export function snrOfInput(input) {
  var W = input.width, H = input.height, d = input.data;
  var abs = 0;
  for (var y = 1; y < H - 1; y += 1) {
    for (var x = 1; x < W - 1; x += 1) {
      var i = y * W + x;
      var r = d[i - W - 1] - 2 * d[i - W] + d[i - W + 1]
        - 2 * d[i - 1] + 4 * d[i] - 2 * d[i + 1]
        + d[i + W - 1] - 2 * d[i + W] + d[i + W + 1];
      abs += Math.abs(r);
    }
  }
  var sigma = Math.sqrt(Math.PI / 2) * abs / (6 * (W - 2) * (H - 2));
  var n = W * H, mean = 0, sq = 0;
  for (var k = 0; k < n; k += 1) { mean += d[k]; }
  mean /= n;
  for (k = 0; k < n; k += 1) { sq += (d[k] - mean) * (d[k] - mean); }
  var std = Math.sqrt(sq / n);
  if (sigma > 1e-9) { return Math.min(std / sigma, 1e6); }
  return std === 0 ? 0 : 1e6;
}

function reflect101(i, n) {
  if (n === 1) { return 0; }
  while (i < 0 || i >= n) { i = i < 0 ? -i : 2 * n - 2 - i; }
  return i;
}

/**
 * Variance of the 3x3 Laplacian (reflect-101 borders) of a gray crop, measured at 48x48
 * (INTER_AREA) when the crop is larger (inference_worker.quality.sharpness).
 */
export function sharpness(crop, size) {
  var img = (crop.width > size || crop.height > size) ? resizeTo(crop, size) : crop;
  var W = img.width, H = img.height, d = img.data, n = W * H;
  var values = new Float64Array(n), mean = 0;
  for (var y = 0; y < H; y += 1) {
    var up = reflect101(y - 1, H) * W, down = reflect101(y + 1, H) * W, row = y * W;
    for (var x = 0; x < W; x += 1) {
      var left = reflect101(x - 1, W), right = reflect101(x + 1, W);
      var v = d[up + x] + d[down + x] + d[row + left] + d[row + right] - 4 * d[row + x];
      values[row + x] = v;
      mean += v;
    }
  }
  mean /= n;
  var sq = 0;
  for (var k = 0; k < n; k += 1) { sq += (values[k] - mean) * (values[k] - mean); }
  return sq / n;
}

/** Row softmax of logits (ml.inference.softmax), float64. */
export function softmax(logits) {
  var max = -Infinity, i;
  for (i = 0; i < logits.length; i += 1) { max = Math.max(max, logits[i]); }
  var exps = [], total = 0;
  for (i = 0; i < logits.length; i += 1) { exps.push(Math.exp(logits[i] - max)); total += exps[i]; }
  return exps.map(function (e) { return e / total; });
}

/**
 * The crop and gate stages of inference_worker.pipeline.analyze_frame for detections of one
 * frame: per face the head pose, the quality issue (too_small, turned_away, too_dark, blurred,
 * in that order) and, for faces that pass, the 48x48 input to classify.
 * @param {{width,height,data:Uint8Array}} gray the frame, gray.
 * @param {{box:number[],score:number,keypoints:number[][]|null}[]} detections pixel boxes and
 *   keypoints.
 * @param {object} definition contracts.pipeline.pipeline_definition().
 * @returns {{box,score,pose,issue,input}[]} by descending score; input null unless assessed.
 */
export function analyseFaces(gray, detections, definition) {
  var gate = definition.gate;
  var sorted = detections.slice().sort(function (a, b) { return b.score - a.score; });
  var faces = [];
  sorted.forEach(function (d) {
    var roll = 0;
    if (d.keypoints && d.keypoints.length >= 2) {
      var measured = eyeRollDeg(d.keypoints[0], d.keypoints[1]);
      if (Math.abs(measured) >= definition.level_above_deg) { roll = measured; }
    }
    var crop = alignedCrop(gray, d.box, definition.crop_margin, roll);
    if (crop === null) { return; }
    var pose = d.keypoints ? headPose(d.keypoints, definition.head_pose) : null;
    var issue = null;
    if (Math.max(d.box[2], d.box[3]) < gate.min_face_px) {
      issue = 'too_small';
    } else if (pose && (Math.abs(pose.yaw_deg) > gate.max_yaw_deg || Math.abs(pose.pitch_deg) > gate.max_pitch_deg)) {
      issue = 'turned_away';
    }
    var input = null;
    if (issue === null) {
      input = resizeTo(crop, definition.input_size);
      if (snrOfInput(input) < gate.min_snr) {
        issue = 'too_dark';
      } else if (sharpness(crop, definition.input_size) < gate.min_sharpness) {
        issue = 'blurred';
      }
      if (issue !== null) { input = null; }
    }
    faces.push({ box: d.box, score: d.score, pose: pose, issue: issue, input: input });
  });
  return faces;
}

function round6(x) { return Math.round(x * 1e6) / 1e6; }

/**
 * One face of the numbers message (contracts/device.py): the box clipped to the frame and
 * normalised, probabilities rounded to 6 decimals.
 */
export function faceMessage(face, width, height, probabilities) {
  var x0 = Math.min(Math.max(face.box[0], 0), width), y0 = Math.min(Math.max(face.box[1], 0), height);
  var x1 = Math.min(Math.max(face.box[0] + face.box[2], 0), width);
  var y1 = Math.min(Math.max(face.box[1] + face.box[3], 0), height);
  return {
    box: [round6(x0 / width), round6(y0 / height), round6((x1 - x0) / width), round6((y1 - y0) / height)],
    score: round6(Math.min(Math.max(face.score, 0), 1)),
    probabilities: probabilities ? probabilities.map(round6) : null,
    yaw_deg: face.pose ? round6(face.pose.yaw_deg) : null,
    pitch_deg: face.pose ? round6(face.pose.pitch_deg) : null,
    quality_issue: face.issue
  };
}
