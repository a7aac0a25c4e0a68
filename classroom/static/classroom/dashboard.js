/*
 * Teacher's live board. Renders the snapshot embedded in the page, then applies every
 * "session.update" message pushed over ws(s)://<host>/ws/dashboard/<uuid>/ as soon as it arrives
 * (classroom.selectors.dashboard_snapshot). A message with full=true carries the whole timeline (sent on
 * connect); refreshes carry full=false and only the last 2 points, merged by "t". Shows the
 * smoothed expression mix (absent in attention-only sessions), attention, analysis lag (latest
 * and p95) and dropped frames, in the warning colour when frames are dropped or the lag exceeds
 * data-lag-warn-ms. Reconnects with exponential backoff if the socket drops.
 *
 * For screen readers: visually hidden tables behind both charts (the mix; the timeline's last
 * minute), and a polite live region (#board-summary, summary.js) that says one sentence about the
 * class on a large change or every 30 s. The timeline's legend is HTML, collapsed on phones.
 */
(function () {
  'use strict';

  var C = window.ClassMoodCharts;
  var board = document.getElementById('board');
  if (!board || !C) { return; }

  var expressions = C.readJSON('expressions-data') || [];
  var colours = C.readJSON('colours-data') || {};
  // face-quality issue -> how it is said (contracts.QUALITY_ISSUE_LABELS, from the page)
  var issueText = C.readJSON('quality-issues-data') || {};
  var lagWarnMs = Number(board.dataset.lagWarnMs) || 1000;
  var el = {
    facesNow: document.getElementById('faces-now'),
    participants: document.getElementById('participants'),
    framesAnalysed: document.getElementById('frames-analysed'),
    framesReceived: document.getElementById('frames-received'),
    framesRejected: document.getElementById('frames-rejected'),
    framesDropped: document.getElementById('frames-dropped'),
    droppedTile: document.getElementById('dropped-tile'),
    droppedWarn: document.getElementById('dropped-warn'),
    attention: document.getElementById('attention'),
    attentionMeter: document.getElementById('attention-meter'),
    lag: document.getElementById('lag'),
    lagP95: document.getElementById('lag-p95'),
    lagTile: document.getElementById('lag-tile'),
    lagWarn: document.getElementById('lag-warn'),
    status: document.getElementById('session-status'),
    conn: document.getElementById('connection-state'),
    mixList: document.getElementById('mix-list'),
    mixEmpty: document.getElementById('mix-empty'),
    mixCoverage: document.getElementById('mix-coverage'),
    startForm: document.getElementById('start-form'),
    endForm: document.getElementById('end-form'),
    summary: document.getElementById('board-summary'),
    mixTable: document.getElementById('mix-table'),
    timelineTable: document.getElementById('timeline-table')
  };

  /** Rows of the board's timeline table: the last minute of 5-s intervals. */
  var TIMELINE_TABLE_ROWS = 12;
  var announcer = window.ClassMoodSummary && el.summary
    ? new window.ClassMoodSummary.Announcer(el.summary, expressions)
    : null;
  if (announcer) { window.setInterval(function () { announcer.tick(); }, 1000); }

  // Charts are an enhancement: the numbers and the mix list work without Chart.js.
  var mixChart = null;
  var timelineChart = null;
  if (window.Chart) {
    var mixCanvas = document.getElementById('mix-chart');
    if (mixCanvas) { mixChart = C.mixChart(mixCanvas, expressions, colours); }
    timelineChart = C.timelineChart(document.getElementById('timeline-chart'), expressions, colours);
    C.htmlLegend(timelineChart, document.getElementById('timeline-card'));
  }

  // The timeline as last drawn: replaced by full updates, merged with the tails of refreshes.
  var timeline = [];

  var STATUS_TEXT = { draft: 'Draft', live: 'Live', ended: 'Ended' };

  function setText(node, text) {
    if (node && node.textContent !== String(text)) { node.textContent = text; }
  }

  function renderMixList(mix) {
    if (!el.mixList) { return; }  // attention-only session: no expression anywhere
    var labels = expressions.filter(function (e) { return mix && mix[e] > 0; });
    el.mixList.textContent = '';
    labels.sort(function (a, b) { return mix[b] - mix[a]; }).forEach(function (e) {
      var li = document.createElement('li');
      var swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.backgroundColor = colours[e];
      swatch.setAttribute('aria-hidden', 'true');
      li.appendChild(swatch);
      li.appendChild(document.createTextNode(e + ' ' + C.percent(mix[e])));
      el.mixList.appendChild(li);
    });
    el.mixEmpty.hidden = labels.length > 0;
  }

  /** "Expression read on N of M faces; not read: a too small, b blurred." ('' when no face). */
  function coverageText(coverage) {
    if (!coverage || !coverage.faces) { return ''; }
    var text = 'Expression read on ' + coverage.read + ' of ' + coverage.faces + ' faces';
    var reasons = Object.keys(coverage.not_read || {}).filter(function (k) {
      return coverage.not_read[k] > 0;
    }).map(function (k) { return coverage.not_read[k] + ' ' + (issueText[k] || k); });
    return text + (reasons.length ? '; not read: ' + reasons.join(', ') : '') + '.';
  }

  function isNumber(value) { return typeof value === 'number' && isFinite(value); }

  function ms(value) { return isNumber(value) ? Math.round(value) + ' ms' : '—'; }

  function setWarn(tile, note, warn) {
    if (tile) { tile.classList.toggle('tile-warn', warn); }
    if (note) { note.hidden = !warn; }
  }

  /** Apply one session.update payload (or the initial snapshot) to the page. */
  function apply(update) {
    setText(el.facesNow, update.faces_now);
    setText(el.participants, update.participants);
    setText(el.framesAnalysed, update.frames_analysed);
    if (isNumber(update.frames_received)) { setText(el.framesReceived, update.frames_received); }
    if (isNumber(update.frames_rejected)) { setText(el.framesRejected, update.frames_rejected); }
    if (isNumber(update.frames_dropped)) {
      setText(el.framesDropped, update.frames_dropped);
      setWarn(el.droppedTile, el.droppedWarn, update.frames_dropped > 0);
    }
    setText(el.lag, ms(update.lag_ms));
    setText(el.lagP95, ms(update.lag_p95_ms));
    setWarn(el.lagTile, el.lagWarn,
      (isNumber(update.lag_ms) && update.lag_ms > lagWarnMs) ||
      (isNumber(update.lag_p95_ms) && update.lag_p95_ms > lagWarnMs));
    setText(el.attention, isNumber(update.attention) ? C.percent(update.attention) : '—');
    if (el.attentionMeter) { el.attentionMeter.value = isNumber(update.attention) ? update.attention : 0; }
    if (update.status) {
      setText(el.status, STATUS_TEXT[update.status] || update.status);
      el.status.className = 'status status-' + update.status;
      board.dataset.status = update.status;
      if (el.startForm) { el.startForm.hidden = update.status !== 'draft'; }
      if (el.endForm) { el.endForm.hidden = update.status !== 'live'; }
    }
    var groupNotice = document.getElementById('group-notice');
    if (groupNotice && typeof update.suppressed === 'boolean') { groupNotice.hidden = !update.suppressed; }
    renderMixList(update.mix || {});
    if (el.mixCoverage) {
      setText(el.mixCoverage, coverageText(update.coverage));
      var unread = update.coverage && update.coverage.faces > 0 && !update.coverage.read;
      setText(el.mixEmpty, unread ? el.mixEmpty.dataset.unread : el.mixEmpty.dataset.none);
    }
    if (mixChart) { C.updateMix(mixChart, update.mix || {}); }
    if (el.mixTable) { C.fillMixTable(el.mixTable, expressions, update.mix || {}); }
    timeline = update.full === false
      ? C.mergeTimeline(timeline, update.timeline)
      : (update.timeline || []).slice();
    if (timelineChart) { C.updateTimeline(timelineChart, timeline); }
    if (el.timelineTable) {
      C.fillTimelineTable(el.timelineTable, expressions, timeline, TIMELINE_TABLE_ROWS);
    }
    if (announcer) { announcer.offer(update); }
  }

  function setConnection(state, text) {
    el.conn.className = 'conn conn-' + state;
    setText(el.conn, text);
  }

  var socket = null;
  var attempt = 0;
  var retryTimer = null;

  function socketUrl() {
    var scheme = window.location.protocol === 'https:' ? 'wss://' : 'ws://';
    return scheme + window.location.host + board.dataset.wsPath;
  }

  function connect() {
    retryTimer = null;
    setConnection('connecting', 'connecting…');
    socket = new WebSocket(socketUrl());
    socket.onopen = function () {
      attempt = 0;
      setConnection('open', 'connected');
    };
    socket.onmessage = function (event) {
      var msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (msg.type === 'session.update') { apply(msg); }
    };
    socket.onclose = function (event) {
      socket = null;
      if (event.code === 4403) {
        setConnection('closed', 'not allowed (log in again)');
        return;
      }
      if (event.code === 4401) {
        setConnection('closed', 'you logged out (log in again to follow the class)');
        return;
      }
      // Exponential backoff, 1 s doubling to 30 s, with jitter so a restarted server is not
      // hit by every board at the same instant.
      var delay = Math.min(30000, 1000 * Math.pow(2, attempt)) * (0.75 + Math.random() * 0.5);
      attempt += 1;
      setConnection('closed', 'reconnecting in ' + Math.round(delay / 1000) + ' s…');
      retryTimer = window.setTimeout(connect, delay);
    };
  }

  // Reconnect at once when the tab comes back or the network returns.
  function reconnectNow() {
    if (socket === null && retryTimer !== null) {
      window.clearTimeout(retryTimer);
      attempt = 0;
      connect();
    }
  }
  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', function () {
    if (!document.hidden) { reconnectNow(); }
  });

  var snapshot = C.readJSON('snapshot-data');
  if (snapshot) { apply(snapshot); }
  connect();
})();
