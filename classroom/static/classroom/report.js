/*
 * Session report page: draws the whole-session smoothed expression mix (absent in
 * attention-only sessions) and the timeline with attention (charts.js).
 */
(function () {
  'use strict';
  // Swatch colours come as data attributes: the Content-Security-Policy allows no inline style.
  Array.prototype.forEach.call(document.querySelectorAll('.swatch[data-colour]'), function (el) {
    el.style.backgroundColor = el.dataset.colour;
  });
  var C = window.ClassMoodCharts;
  if (!C || !window.Chart) { return; }
  var expressions = C.readJSON('expressions-data') || [];
  var colours = C.readJSON('colours-data') || {};
  var mixCanvas = document.getElementById('mix-chart');
  if (mixCanvas) {
    C.updateMix(C.mixChart(mixCanvas, expressions, colours), C.readJSON('mix-data') || {});
  }
  var timelineCanvas = document.getElementById('timeline-chart');
  if (timelineCanvas) {
    C.updateTimeline(C.timelineChart(timelineCanvas, expressions, colours), C.readJSON('timeline-data') || []);
  }
})();
