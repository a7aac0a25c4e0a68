/*
 * Session report page: draws the whole-session smoothed expression mix (absent in
 * attention-only sessions) and the timeline with attention (charts.js), its HTML legend, a
 * visually hidden table of the timeline, and the participants table's scroll hint.
 */
(function () {
  'use strict';
  // Swatch colours come as data attributes: the Content-Security-Policy allows no inline style.
  Array.prototype.forEach.call(document.querySelectorAll('.swatch[data-colour]'), function (el) {
    el.style.backgroundColor = el.dataset.colour;
  });
  // Say that the participants table scrolls sideways, only when it does.
  var region = document.getElementById('participants-region');
  var hint = document.getElementById('participants-scroll-hint');
  function showScrollHint() {
    if (region && hint) { hint.hidden = region.scrollWidth <= region.clientWidth + 1; }
  }
  showScrollHint();
  window.addEventListener('resize', showScrollHint);

  var C = window.ClassMoodCharts;
  if (!C) { return; }
  var expressions = C.readJSON('expressions-data') || [];
  var colours = C.readJSON('colours-data') || {};
  var timelineTable = document.getElementById('timeline-table');
  if (timelineTable) {
    C.fillTimelineTable(timelineTable, expressions, C.readJSON('timeline-data') || []);
  }
  if (!window.Chart) { return; }
  var mixCanvas = document.getElementById('mix-chart');
  if (mixCanvas) {
    C.updateMix(C.mixChart(mixCanvas, expressions, colours), C.readJSON('mix-data') || {});
  }
  var timelineCanvas = document.getElementById('timeline-chart');
  if (timelineCanvas) {
    var timelineChart = C.timelineChart(timelineCanvas, expressions, colours);
    C.updateTimeline(timelineChart, C.readJSON('timeline-data') || []);
    C.htmlLegend(timelineChart, document.getElementById('timeline-card'));
  }
})();
