/*
 * Chart helpers shared by the live board (dashboard.js) and the report page.
 * Needs Chart.js (served from node_modules as static "vendor/chart.js/chart.umd.js").
 * Exposes window.ClassMoodCharts.
 */
(function () {
  'use strict';

  /** Parse the JSON of a <script type="application/json"> element made by Django's json_script. */
  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  /** 0.256 -> "26 %". */
  function percent(share) {
    return Math.round((share || 0) * 100) + ' %';
  }

  /** ISO 8601 timestamp -> local "HH:MM:SS". */
  function clock(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return String(iso); }
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }

  if (window.Chart) {
    // Live data: redraw at once, no tweening between updates.
    Chart.defaults.animation = false;
    Chart.defaults.color = '#1f2328';
    Chart.defaults.font.size = 13;
  }

  /** Colour of the attention line and gauge (not one of the expression colours). */
  var ATTENTION_COLOUR = '#5B2A86';

  /**
   * Bar chart of the expression mix (share of faces per expression, 0..1 shown as %), from the
   * SMOOTHED labels (each face's moving average over its track).
   * @param {HTMLCanvasElement} canvas
   * @param {string[]} expressions fixed order (FER2013)
   * @param {Object<string,string>} colours expression -> CSS colour
   */
  function mixChart(canvas, expressions, colours) {
    return new Chart(canvas, {
      type: 'bar',
      data: {
        labels: expressions,
        datasets: [{
          label: 'Share of faces (smoothed)',
          data: expressions.map(function () { return 0; }),
          backgroundColor: expressions.map(function (e) { return colours[e]; }),
          borderWidth: 0
        }]
      },
      options: {
        maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: function (ctx) { return percent(ctx.parsed.y) + ' of faces (smoothed)'; }
            }
          }
        },
        scales: {
          y: {
            min: 0, max: 1,
            ticks: { callback: function (v) { return percent(v); } },
            title: { display: true, text: 'share of faces (smoothed)' }
          }
        }
      }
    });
  }

  /** Put a mix {label: share} into a mixChart (missing labels count as 0). */
  function updateMix(chart, mix) {
    var expressions = chart.data.labels;
    chart.data.datasets[0].data = expressions.map(function (e) { return (mix && mix[e]) || 0; });
    chart.update('none');
  }

  /**
   * Line chart of the session: faces per 5-s bucket (left axis), attention and each
   * expression's smoothed share (right axis, %). With no expressions (attention-only sessions)
   * only faces and attention are drawn. Each dataset's "key" names the point field it shows.
   */
  function timelineChart(canvas, expressions, colours) {
    var datasets = [{
      key: 'faces',
      label: 'faces',
      data: [],
      yAxisID: 'faces',
      borderColor: '#1f2328',
      backgroundColor: '#1f2328',
      borderWidth: 3,
      pointRadius: 0,
      tension: 0
    }];
    datasets.push({
      key: 'attention',
      label: 'attention (facing the screen)',
      data: [],
      yAxisID: 'share',
      borderColor: ATTENTION_COLOUR,
      backgroundColor: ATTENTION_COLOUR,
      borderWidth: 3,
      borderDash: [8, 4],
      pointRadius: 0,
      tension: 0
    });
    expressions.forEach(function (e) {
      datasets.push({
        key: e,
        label: e + ' (smoothed)',
        data: [],
        yAxisID: 'share',
        borderColor: colours[e],
        backgroundColor: colours[e],
        borderWidth: 2,
        pointRadius: 0,
        tension: 0
      });
    });
    return new Chart(canvas, {
      type: 'line',
      data: { labels: [], datasets: datasets },
      options: {
        maintainAspectRatio: false,
        interaction: { mode: 'index', intersect: false },
        plugins: {
          // The legend is HTML (htmlLegend): ten entries in the canvas left a plot ~120 px tall
          // on a phone, and HTML buttons can be reached by keyboard.
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                return ctx.dataset.yAxisID === 'share'
                  ? ctx.dataset.label + ': ' + percent(ctx.parsed.y)
                  : ctx.dataset.label + ': ' + ctx.parsed.y;
              }
            }
          }
        },
        scales: {
          x: { ticks: { maxRotation: 0, autoSkipPadding: 16 } },
          faces: {
            position: 'left', beginAtZero: true,
            ticks: { precision: 0 },
            title: { display: true, text: 'faces' }
          },
          share: {
            position: 'right', min: 0, max: 1,
            grid: { drawOnChartArea: false },
            ticks: { callback: function (v) { return percent(v); } },
            title: { display: true, text: 'share of faces' }
          }
        }
      }
    });
  }

  /**
   * Replace a timelineChart's data with [{t, faces, mix, attention}, ...] (a full
   * session.update timeline, or one merged with mergeTimeline).
   */
  function updateTimeline(chart, timeline) {
    var points = timeline || [];
    chart.data.labels = points.map(function (p) { return clock(p.t); });
    chart.data.datasets.forEach(function (ds) {
      if (ds.key === 'faces') {
        ds.data = points.map(function (p) { return p.faces; });
      } else if (ds.key === 'attention') {
        // No face with a head pose in a bucket: a gap, not 0 %.
        ds.data = points.map(function (p) {
          return p.attention === null || p.attention === undefined ? null : p.attention;
        });
      } else {
        // No face in a bucket: no share to show (a gap in the line, not a drop to 0 %).
        ds.data = points.map(function (p) {
          var mix = p.mix || {};
          return Object.keys(mix).length ? (mix[ds.key] || 0) : null;
        });
      }
    });
    chart.update('none');
  }

  /**
   * Merge timeline points by "t": points of `incoming` replace those of `current` with the same
   * "t" (a bucket still filling), new ones are added; the result is in time order. `current`
   * is not modified. Used for the 2-point tails of refreshes (session.update with full=false).
   * @param {Array<{t: string}>} current
   * @param {Array<{t: string}>} incoming
   * @returns {Array<{t: string}>}
   */
  function mergeTimeline(current, incoming) {
    var byT = {};
    (current || []).forEach(function (p) { byT[p.t] = p; });
    (incoming || []).forEach(function (p) { byT[p.t] = p; });
    return Object.keys(byT).map(function (t) { return byT[t]; }).sort(function (a, b) {
      return new Date(a.t).getTime() - new Date(b.t).getTime();
    });
  }

  /** Screens at most this wide (CSS px) start with the legend collapsed: classroom.css's phone
   *  breakpoint, `@media (max-width: 640px)`. */
  var NARROW_PX = 640;

  /**
   * An HTML legend for `chart` in `container`: a <details> ("Legend", collapsed on screens up to
   * NARROW_PX wide) with one toggle button per dataset (aria-pressed; pressing hides or shows
   * the line). Line swatches show the dataset's colour, dashed where the line is dashed.
   * @param {Chart} chart a Chart.js chart (timelineChart)
   * @param {HTMLElement} container the legend is appended to it
   * @returns {HTMLDetailsElement} the legend
   */
  function htmlLegend(chart, container) {
    var details = document.createElement('details');
    details.className = 'chart-legend';
    var narrow = window.matchMedia('(max-width: ' + NARROW_PX + 'px)');
    details.open = !narrow.matches;
    // Turning a tablet or resizing a window across the limit collapses or opens it again.
    narrow.addEventListener('change', function (event) { details.open = !event.matches; });
    var summary = document.createElement('summary');
    summary.textContent = 'Legend (' + chart.data.datasets.length + ' lines; press one to hide or show it)';
    details.appendChild(summary);
    var list = document.createElement('ul');
    chart.data.datasets.forEach(function (ds, index) {
      var li = document.createElement('li');
      var button = document.createElement('button');
      button.type = 'button';
      button.className = 'legend-item';
      button.setAttribute('aria-pressed', 'true');
      var line = document.createElement('span');
      line.className = 'legend-line' + (ds.borderDash && ds.borderDash.length ? ' dashed' : '');
      line.style.color = ds.borderColor;
      line.setAttribute('aria-hidden', 'true');
      button.appendChild(line);
      button.appendChild(document.createTextNode(ds.label));
      button.addEventListener('click', function () {
        var shown = !chart.isDatasetVisible(index);
        chart.setDatasetVisibility(index, shown);
        button.setAttribute('aria-pressed', String(shown));
        chart.update('none');
      });
      li.appendChild(button);
      list.appendChild(li);
    });
    details.appendChild(list);
    container.appendChild(details);
    return details;
  }

  /** A <th scope="col"> (callers set scope "row" for row headers) or a <td> holding `text`. */
  function cell(tag, text) {
    var node = document.createElement(tag);
    node.textContent = text;
    if (tag === 'th') { node.scope = 'col'; }
    return node;
  }

  /**
   * Fill `table` (a <table> with a <caption>) with the expression mix: one row per expression
   * (fixed order), its share of faces in %.
   * @param {HTMLTableElement} table
   * @param {string[]} expressions
   * @param {Object<string,number>} mix expression -> share 0..1
   */
  function fillMixTable(table, expressions, mix) {
    if (!table.tHead) {
      var head = table.createTHead().insertRow();
      head.appendChild(cell('th', 'Expression'));
      head.appendChild(cell('th', 'Share of faces (smoothed)'));
    }
    var body = table.tBodies[0] || table.appendChild(document.createElement('tbody'));
    body.textContent = '';
    expressions.forEach(function (e) {
      var row = body.insertRow();
      var th = cell('th', e);
      th.scope = 'row';
      row.appendChild(th);
      row.appendChild(cell('td', percent((mix && mix[e]) || 0)));
    });
  }

  /**
   * Fill `table` with timeline points [{t, faces, attention, mix}] (the newest `maxRows`, all
   * when omitted): time, faces, attention and each expression's share ('—' where a bucket had
   * no face to measure).
   */
  function fillTimelineTable(table, expressions, timeline, maxRows) {
    if (!table.tHead) {
      var head = table.createTHead().insertRow();
      ['Time', 'Faces', 'Attention'].concat(expressions).forEach(function (name) {
        head.appendChild(cell('th', name));
      });
    }
    var points = timeline || [];
    if (maxRows) { points = points.slice(-maxRows); }
    var body = table.tBodies[0] || table.appendChild(document.createElement('tbody'));
    body.textContent = '';
    points.forEach(function (p) {
      var row = body.insertRow();
      var th = cell('th', clock(p.t));
      th.scope = 'row';
      row.appendChild(th);
      row.appendChild(cell('td', String(p.faces)));
      row.appendChild(cell('td', p.attention === null || p.attention === undefined ? '—' : percent(p.attention)));
      var mix = p.mix || {};
      var any = Object.keys(mix).length > 0;
      expressions.forEach(function (e) { row.appendChild(cell('td', any ? percent(mix[e] || 0) : '—')); });
    });
  }

  window.ClassMoodCharts = {
    htmlLegend: htmlLegend,
    fillMixTable: fillMixTable,
    fillTimelineTable: fillTimelineTable,
    readJSON: readJSON,
    percent: percent,
    clock: clock,
    ATTENTION_COLOUR: ATTENTION_COLOUR,
    mergeTimeline: mergeTimeline,
    mixChart: mixChart,
    updateMix: updateMix,
    timelineChart: timelineChart,
    updateTimeline: updateTimeline
  };
})();
