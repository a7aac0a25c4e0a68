/*
 * Teacher's live board. Renders the snapshot embedded in the page, then applies every
 * "session.update" message pushed over ws(s)://<host>/ws/dashboard/<uuid>/ as soon as it arrives
 * (CONTRACTS.md, "Teacher dashboard"). Reconnects with exponential backoff if the socket drops.
 */
(function () {
  'use strict';

  var C = window.ClassMoodCharts;
  var board = document.getElementById('board');
  if (!board || !C) { return; }

  var expressions = C.readJSON('expressions-data') || [];
  var colours = C.readJSON('colours-data') || {};
  var el = {
    facesNow: document.getElementById('faces-now'),
    participants: document.getElementById('participants'),
    framesAnalysed: document.getElementById('frames-analysed'),
    lag: document.getElementById('lag'),
    status: document.getElementById('session-status'),
    conn: document.getElementById('connection-state'),
    mixList: document.getElementById('mix-list'),
    mixEmpty: document.getElementById('mix-empty'),
    startForm: document.getElementById('start-form'),
    endForm: document.getElementById('end-form')
  };

  // Charts are an enhancement: the numbers and the mix list work without Chart.js.
  var mixChart = null;
  var timelineChart = null;
  if (window.Chart) {
    mixChart = C.mixChart(document.getElementById('mix-chart'), expressions, colours);
    timelineChart = C.timelineChart(document.getElementById('timeline-chart'), expressions, colours);
  }

  var STATUS_TEXT = { draft: 'Draft', live: 'Live', ended: 'Ended' };

  function setText(node, text) {
    if (node && node.textContent !== String(text)) { node.textContent = text; }
  }

  function renderMixList(mix) {
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

  /** Apply one session.update payload (or the initial snapshot) to the page. */
  function apply(update) {
    setText(el.facesNow, update.faces_now);
    setText(el.participants, update.participants);
    setText(el.framesAnalysed, update.frames_analysed);
    setText(el.lag, update.lag_ms === null || update.lag_ms === undefined
      ? '—' : Math.round(update.lag_ms) + ' ms');
    if (update.status) {
      setText(el.status, STATUS_TEXT[update.status] || update.status);
      el.status.className = 'status status-' + update.status;
      board.dataset.status = update.status;
      if (el.startForm) { el.startForm.hidden = update.status !== 'draft'; }
      if (el.endForm) { el.endForm.hidden = update.status !== 'live'; }
    }
    renderMixList(update.mix || {});
    if (mixChart) { C.updateMix(mixChart, update.mix || {}); }
    if (timelineChart) { C.updateTimeline(timelineChart, update.timeline || []); }
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
