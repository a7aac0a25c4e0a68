/*
 * On-device analysis for the student page: BlazeFace (MediaPipe Tasks FaceDetector, WASM) finds
 * the faces, pipeline.js crops and gates them as the worker does, and our shipped expression
 * classifier runs in LiteRT.js (WASM, XNNPACK). Everything, models and WASM included, is served by
 * our own server (config.ondevice.*); nothing is fetched from anywhere else, and no pixel leaves
 * the page: analyse() returns the numbers message of contracts/device.py.
 *
 * Bundled by esbuild (npm run build) into build/ondevice/ondevice.js, which sets
 * window.ClassMoodOnDevice = {createAnalyser, pipeline}.
 */
import { FaceDetector, FilesetResolver } from '@mediapipe/tasks-vision';
import { loadAndCompile, loadLiteRt, Tensor } from '@litertjs/core';
import * as pipeline from './pipeline.js';

var litertLoaded = null;

function now() { return performance.now(); }

/**
 * Load the detector and (unless `classify` is false) the classifier.
 * @param {object} options config.ondevice of the student page: {mediapipe_wasm, litert_wasm,
 *   detector_model, classifier_model, pipeline (contracts.pipeline_definition()), classify}.
 * @returns {Promise<{analyse: function(HTMLCanvasElement): object, close: function(), loadMs: number}>}
 * @throws {Error} WebAssembly, the detector or the classifier cannot load (the message says which).
 */
export async function createAnalyser(options) {
  if (typeof WebAssembly !== 'object') { throw new Error('this browser has no WebAssembly'); }
  var definition = options.pipeline;
  var started = now();
  var fileset = await FilesetResolver.forVisionTasks(options.mediapipe_wasm);
  var detector = await FaceDetector.createFromOptions(fileset, {
    baseOptions: { modelAssetPath: options.detector_model, delegate: 'CPU' },
    runningMode: 'IMAGE',
    minDetectionConfidence: definition.min_detection_score,
    minSuppressionThreshold: 0.3
  });
  var classifier = null;
  if (options.classify) {
    if (litertLoaded === null) { litertLoaded = loadLiteRt(options.litert_wasm); }
    await litertLoaded;
    classifier = await loadAndCompile(options.classifier_model, { accelerator: 'wasm' });
  }
  var loadMs = now() - started;
  var size = definition.input_size;

  async function classify(input) {
    var x = new Float32Array(size * size);
    for (var i = 0; i < x.length; i += 1) { x[i] = input.data[i] / 255; }
    var tensor = new Tensor(x, [1, size, size, 1]);
    var outputs = await classifier.run(tensor);
    tensor.delete();
    var logits = Array.from(outputs[0].toTypedArray());
    outputs.forEach(function (t) { t.delete(); });
    return pipeline.softmax(logits);
  }

  /**
   * Analyse the picture on a canvas.
   * @returns {Promise<{width, height, faces: object[], timings_ms: object}>} the message without
   *   type, seq and captured_at (the page adds them).
   */
  async function analyse(canvas) {
    var t0 = now();
    var width = canvas.width, height = canvas.height;
    var found = detector.detect(canvas).detections || [];
    var t1 = now();
    var detections = found.map(function (d) {
      var b = d.boundingBox;
      return {
        box: [b.originX, b.originY, b.width, b.height],
        score: d.categories && d.categories.length ? d.categories[0].score : 0,
        keypoints: d.keypoints && d.keypoints.length === 6
          ? d.keypoints.map(function (k) { return [k.x * width, k.y * height]; })
          : null
      };
    });
    var rgba = canvas.getContext('2d', { willReadFrequently: true }).getImageData(0, 0, width, height);
    var faces = pipeline.analyseFaces(pipeline.rgbaToGray(rgba), detections, definition);
    var t2 = now();
    var out = [];
    for (var i = 0; i < faces.length; i += 1) {
      var face = faces[i];
      var probabilities = face.input && classifier ? await classify(face.input) : null;
      var message = pipeline.faceMessage(face, width, height, probabilities);
      if (message.box[2] > 0 && message.box[3] > 0) { out.push(message); }
    }
    var t3 = now();
    return {
      width: width,
      height: height,
      faces: out,
      timings_ms: { detect: t1 - t0, crop: t2 - t1, classify: t3 - t2, total: t3 - t0 }
    };
  }

  /**
   * Classify ready 48x48 gray inputs (for parity checks against the worker).
   * @param {Uint8Array} pixels N * 48 * 48 bytes, row-major faces one after another.
   * @returns {Promise<Float64Array>} N * 7 probabilities, FER2013 order.
   * @throws {Error} the analyser was created without the classifier.
   */
  async function classifyInputs(pixels) {
    if (!classifier) { throw new Error('created without the classifier'); }
    var n = pixels.length / (size * size);
    var out = new Float64Array(n * 7);
    for (var i = 0; i < n; i += 1) {
      var p = await classify({ data: pixels.subarray(i * size * size, (i + 1) * size * size) });
      out.set(p, i * 7);
    }
    return out;
  }

  function close() {
    detector.close();
    if (classifier && classifier.delete) { classifier.delete(); }
  }

  return { analyse: analyse, classifyInputs: classifyInputs, close: close, loadMs: loadMs };
}

window.ClassMoodOnDevice = { createAnalyser: createAnalyser, pipeline: pipeline };
