/*
 * Student streaming page. The student picks the webcam (getUserMedia) or a screen share
 * (getDisplayMedia); every frame_interval_s the current video frame is drawn onto a canvas scaled
 * down to at most 640 px wide (webcam) or 1280 px (screen), encoded as JPEG and sent over
 * ws(s)://<host>/ws/stream/?source=webcam|screen (what is streamed; it selects the server's
 * face-detection settings) as one binary message (layout in contracts/frames.py):
 *
 *   bytes 0..3   seq          uint32 big-endian, starts at 1
 *   bytes 4..11  captured_at  float64 big-endian, ms since the Unix epoch (this clock)
 *   bytes 12..   JPEG bytes
 *
 * The server answers {"type": "ack"|"error"|"result"|"session.ended", ...} as JSON text.
 *
 * In an on-device session (config.session.analysis_site === 'on-device') no picture is sent: the
 * page loads our bundle (classroom/frontend/ondevice.js: BlazeFace and the expression classifier
 * in WebAssembly, every file from this server), analyses each frame itself and sends one JSON
 * text message of numbers instead (contracts/device.py). If the bundle cannot load (no
 * WebAssembly, a failed download), the page says why and, where the session allows it
 * (config.ondevice.server_fallback), offers to send pictures to the server instead.
 *
 * The first frame is sent as soon as the camera delivers a picture and the socket is open (not a
 * full interval later). What happened to the stream (stopped, session ended, left) is shown in a
 * notification banner; only errors go to "Last error". The preview shows only while streaming;
 * when a pressed button turns disabled the focus moves to the one that is now useful (Stop while
 * streaming, "Use my webcam" after).
 */
(function () {
  'use strict';

  var HEADER_BYTES = 12;
  // Do not queue frames behind a slow link: skip a tick while this much is still unsent.
  var MAX_BUFFERED_BYTES = 1000000;
  var CLOSE_SESSION_ENDED = 4000;
  var CLOSE_LEFT = 4001;
  var CLOSE_REPLACED = 4009;
  var CLOSE_BAD_REQUEST = 4400;
  var CLOSE_NOT_JOINED = 4403;
  var NOT_CONNECTED = 'not connected (connects when you share)';

  var configEl = document.getElementById('student-config');
  if (!configEl) { return; }
  var config = JSON.parse(configEl.textContent);
  var intervalMs = Math.max(200, config.session.frame_interval_s * 1000);

  var el = {
    webcam: document.getElementById('start-webcam'),
    screen: document.getElementById('start-screen'),
    stop: document.getElementById('stop'),
    warning: document.getElementById('support-warning'),
    hint: document.getElementById('share-hint'),
    notice: document.getElementById('student-notice'),
    noticeText: document.getElementById('student-notice-text'),
    previewCard: document.getElementById('preview-card'),
    analysis: document.getElementById('analysis-state'),
    session: document.getElementById('session-state'),
    conn: document.getElementById('connection-state'),
    sent: document.getElementById('frames-sent'),
    acked: document.getElementById('frames-acked'),
    rejected: document.getElementById('frames-rejected'),
    faces: document.getElementById('faces-last'),
    error: document.getElementById('last-error'),
    video: document.getElementById('preview'),
    canvas: document.getElementById('frame-canvas'),
    ondevice: document.getElementById('ondevice-state'),
    fallback: document.getElementById('use-server')
  };

  var state = {
    source: null,      // 'webcam' | 'screen' while streaming
    stream: null,      // MediaStream
    socket: null,
    timer: null,
    retryTimer: null,
    attempt: 0,
    encoding: false,   // a toBlob() is in flight
    pictureReady: false, // the video has presented its first frame (else the canvas is black)
    ended: false,      // the teacher ended the session
    sent: 0,
    acked: 0,
    rejected: 0,
    analyser: null,    // the on-device analyser, once loaded
    serverFallback: false // the student chose to send pictures (on-device session with fallback)
  };

  var onDevice = !!config.ondevice;
  /** Whether this stream is analysed in the page (numbers only) rather than on the server. */
  function analysingHere() { return onDevice && !state.serverFallback; }

  // seq must keep growing for this participant across page reloads: results are idempotent on
  // (participant, seq), so a restarted counter would make the server drop new frames as repeats.
  var seqKey = 'classmood.seq.' + config.participant.id;
  function nextSeq() {
    var seq = 1;
    try {
      seq = (parseInt(window.localStorage.getItem(seqKey), 10) || 0) + 1;
      window.localStorage.setItem(seqKey, String(seq));
    } catch (e) {
      seq = (state.memorySeq || 0) + 1;
    }
    state.memorySeq = seq;
    return seq >>> 0;
  }

  function setText(node, text) { node.textContent = String(text); }

  function render() {
    var streaming = state.source !== null;
    var open = state.socket !== null && state.socket.readyState === WebSocket.OPEN;
    var on = streaming && open && !state.ended;
    el.analysis.className = 'pill ' + (on ? 'pill-on' : 'pill-off');
    setText(el.analysis, on
      ? (analysingHere()
        ? 'Analysis on, in this browser: sending numbers about your ' + state.source + ' every ' + config.session.frame_interval_s + ' s'
        : 'Analysis on: sending your ' + state.source + ' every ' + config.session.frame_interval_s + ' s')
      : (streaming && !state.ended ? 'Analysis paused (reconnecting)' : 'Analysis off'));
    setText(el.sent, state.sent);
    setText(el.acked, state.acked);
    setText(el.rejected, state.rejected);
    var focusedButton = document.activeElement;
    el.stop.disabled = !streaming;
    // While streaming, the two share buttons are off: Stop first, then choose again.
    el.webcam.disabled = state.ended || !hasCamera || streaming;
    el.screen.disabled = state.ended || !hasScreen || streaming;
    el.previewCard.hidden = !streaming;
    el.hint.hidden = streaming || state.ended;
    // A disabled button loses the focus to the page: give it to the button that now does something.
    if (focusedButton && focusedButton.disabled) {
      var next = streaming ? el.stop : (!el.webcam.disabled ? el.webcam : el.noticeText);
      next.focus();
    }
  }

  var media = navigator.mediaDevices;
  var hasCamera = !!(media && media.getUserMedia);
  var hasScreen = !!(media && media.getDisplayMedia);
  if (!hasCamera) {
    el.warning.hidden = false;
    setText(el.warning, 'This browser gives no camera access here. Camera and screen sharing need a secure (https) page.');
  } else if (!hasScreen) {
    el.warning.hidden = false;
    setText(el.warning, 'This browser cannot share a screen; the webcam works.');
  }

  function showError(text) { setText(el.error, text); }

  /** Show `text` in the notification banner ('' hides it). */
  function showNotice(text) {
    setText(el.noticeText, text || '');
    el.notice.hidden = !text;
  }

  // --- capture -------------------------------------------------------------------------------

  // --- on-device analysis ---------------------------------------------------------------------

  var analyserPromise = null;

  /** Load the bundle (a module script from this server) and the models, once. */
  function loadAnalyser() {
    if (analyserPromise) { return analyserPromise; }
    setText(el.ondevice, 'loading the models…');
    analyserPromise = new Promise(function (resolve, reject) {
      if (typeof WebAssembly !== 'object') { reject(new Error('this browser has no WebAssembly')); return; }
      if (window.ClassMoodOnDevice) { resolve(window.ClassMoodOnDevice); return; }
      var script = document.createElement('script');
      script.type = 'module';
      script.src = config.ondevice.bundle;
      script.onload = function () {
        if (window.ClassMoodOnDevice) { resolve(window.ClassMoodOnDevice); } else { reject(new Error('the analysis code did not start')); }
      };
      script.onerror = function () { reject(new Error('the analysis code could not be downloaded')); };
      document.head.appendChild(script);
    }).then(function (lib) {
      return lib.createAnalyser(config.ondevice);
    }).then(function (analyser) {
      state.analyser = analyser;
      setText(el.ondevice, 'ready (loaded in ' + (analyser.loadMs / 1000).toFixed(1) + ' s)');
      return analyser;
    }, function (err) {
      analyserPromise = null;  // a later Share may try again
      setText(el.ondevice, 'not available');
      throw err;
    });
    return analyserPromise;
  }

  function onDeviceUnavailable(source, err) {
    var reason = err && err.message ? err.message : String(err);
    if (config.ondevice.server_fallback) {
      el.fallback.hidden = false;
      el.fallback.dataset.source = source;
      showNotice('This browser cannot analyse on this device (' + reason + '). You can send pictures to the school\'s server instead: press "Send pictures to the server instead". Nothing is sent until you do.');
    } else {
      showError('This browser cannot analyse on this device (' + reason + '), and this session accepts no pictures: you cannot take part from this browser. A recent Chrome, Edge, Firefox or Safari can.');
    }
  }

  function start(source) {
    stop();
    var request = source === 'screen'
      ? media.getDisplayMedia({ video: true, audio: false })
      : media.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    request.then(function (stream) {
      state.source = source;
      state.stream = stream;
      el.video.srcObject = stream;
      showNotice('');
      // Send the first frame as soon as the video plays (the socket may open first or later):
      // at 'loadeddata', and at the first requestVideoFrameCallback, Chromium 156 still draws a
      // black canvas (measured with its fake camera: black at 203-215 ms, the picture at
      // 'playing', 226 ms), and a black frame costs a whole interval before the first figure.
      state.pictureReady = false;
      el.video.addEventListener('playing', function () {
        state.pictureReady = true;
        captureAndSend();
      }, { once: true });
      stream.getVideoTracks().forEach(function (track) {
        // The browser's own "Stop sharing" button, or a camera unplugged.
        track.addEventListener('ended', function () { stop('Sharing stopped. Nothing is being sent.'); });
      });
      openSocket();
      state.timer = window.setInterval(captureAndSend, intervalMs);
      render();
      // The models load after the camera or screen was granted (a screen share must be asked
      // for within the click); nothing is sent before they are ready.
      if (analysingHere() && !state.analyser) {
        loadAnalyser().then(function () { captureAndSend(); render(); }, function (err) {
          stop();
          onDeviceUnavailable(source, err);
          render();
        });
      }
    }).catch(function (err) {
      var name = err && err.name;
      showError(name === 'NotAllowedError'
        ? 'Permission denied: nothing is being sent.'
        : 'Could not start the ' + source + ': ' + (err && err.message ? err.message : name));
      render();
    });
  }

  /**
   * Stop capture and the socket. `notice` (optional) is shown in the banner; with `isError` it is
   * an error and goes to "Last error" instead.
   */
  function stop(notice, isError) {
    if (state.timer !== null) { window.clearInterval(state.timer); state.timer = null; }
    if (state.retryTimer !== null) { window.clearTimeout(state.retryTimer); state.retryTimer = null; }
    if (state.stream) {
      state.stream.getTracks().forEach(function (track) { track.stop(); });
      state.stream = null;
    }
    el.video.srcObject = null;
    state.source = null;
    var socket = state.socket;
    state.socket = null;
    if (socket) {
      socket.onclose = null;
      if (socket.readyState <= WebSocket.OPEN) { socket.close(1000, 'stopped'); }
    }
    setText(el.conn, state.ended ? 'closed' : NOT_CONNECTED);
    if (notice && isError) { showError(notice); } else if (notice) { showNotice(notice); }
    render();
  }

  function captureAndSend() {
    var socket = state.socket;
    var video = el.video;
    if (!socket || socket.readyState !== WebSocket.OPEN || state.encoding) { return; }
    if (socket.bufferedAmount > MAX_BUFFERED_BYTES || !video.videoWidth || !state.pictureReady) { return; }
    if (analysingHere() && !state.analyser) { return; }  // the models are still loading
    var maxWidth = config.max_width_px[state.source] || 640;
    // The longer side, so that a portrait screen stays within what the server accepts too.
    var scale = Math.min(1, maxWidth / Math.max(video.videoWidth, video.videoHeight));
    var canvas = el.canvas;
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext('2d', { willReadFrequently: analysingHere() }).drawImage(video, 0, 0, canvas.width, canvas.height);
    var capturedAt = Date.now();
    state.encoding = true;
    if (analysingHere()) {
      state.analyser.analyse(canvas).then(function (result) {
        state.encoding = false;
        if (state.socket !== socket || socket.readyState !== WebSocket.OPEN) { return; }
        result.type = 'analysis';
        result.seq = nextSeq();
        result.captured_at = capturedAt;
        socket.send(JSON.stringify(result));
        state.sent += 1;
        setText(el.faces, result.faces.length);  // the server sends no result back: this is it
        setText(el.ondevice, 'running: ' + result.faces.length + ' face(s), ' + Math.round(result.timings_ms.total) + ' ms per frame');
        render();
      }, function (err) {
        state.encoding = false;
        showError('On-device analysis failed on a frame: ' + (err && err.message ? err.message : err));
      });
      return;
    }
    canvas.toBlob(function (blob) {
      if (!blob) { state.encoding = false; return; }
      blob.arrayBuffer().then(function (jpeg) {
        state.encoding = false;
        if (state.socket !== socket || socket.readyState !== WebSocket.OPEN) { return; }
        var message = new Uint8Array(HEADER_BYTES + jpeg.byteLength);
        var header = new DataView(message.buffer);
        header.setUint32(0, nextSeq(), false);        // big-endian
        header.setFloat64(4, capturedAt, false);      // big-endian
        message.set(new Uint8Array(jpeg), HEADER_BYTES);
        socket.send(message.buffer);
        state.sent += 1;
        render();
      }, function () { state.encoding = false; });
    }, 'image/jpeg', config.jpeg_quality);
  }

  // --- socket --------------------------------------------------------------------------------

  function socketUrl() {
    var scheme = window.location.protocol === 'https:' ? 'wss://' : 'ws://';
    return scheme + window.location.host + config.ws_path +
      '?source=' + encodeURIComponent(state.source || 'webcam');
  }

  function sessionEnded() {
    state.ended = true;
    setText(el.session, 'Ended by the teacher');
    stop('The session has ended. Thank you! Nothing more is sent from this browser; you can close this page.');
  }

  function onMessage(event) {
    var msg;
    try { msg = JSON.parse(event.data); } catch (e) { return; }
    if (msg.type === 'ack') {
      state.acked += 1;
      setText(el.session, 'Live');
    } else if (msg.type === 'error') {
      state.rejected += 1;
      if (msg.code === 'session_not_live') {
        // Not the student's error: a frame in flight as the class ends, or a class not started.
        setText(el.session, 'Not live (waiting for the teacher)');
        if (!state.ended) { showNotice('The session is not live: nothing is analysed until your teacher starts it.'); }
      } else {
        showError(msg.code + ': ' + msg.message);
      }
    } else if (msg.type === 'result') {
      setText(el.faces, msg.faces);
    } else if (msg.type === 'dropped') {
      state.dropped = (state.dropped || 0) + 1;
      if (msg.reason === 'undecodable') { showError('A picture could not be read by the server and was skipped.'); }
    } else if (msg.type === 'session.ended') {
      sessionEnded();
      return;
    }
    render();
  }

  function openSocket() {
    state.retryTimer = null;
    var socket = new WebSocket(socketUrl());
    socket.binaryType = 'arraybuffer';
    state.socket = socket;
    setText(el.conn, 'connecting…');
    socket.onopen = function () {
      state.attempt = 0;
      setText(el.conn, 'connected');
      captureAndSend();
      render();
    };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      if (state.socket !== socket) { return; }
      state.socket = null;
      if (event.code === CLOSE_SESSION_ENDED) { sessionEnded(); return; }
      if (event.code === CLOSE_LEFT) {
        stop('You left the session. Nothing more is sent from this browser.');
        return;
      }
      if (event.code === CLOSE_REPLACED) {
        stop('This session continues in another tab or window; nothing is sent from this one.');
        return;
      }
      if (event.code === CLOSE_BAD_REQUEST) {
        stop('The server refused the stream: ' + (event.reason || 'bad request') + '.', true);
        return;
      }
      if (event.code === CLOSE_NOT_JOINED) {
        stop('The server does not know this browser any more: please join again.', true);
        return;
      }
      if (state.source === null) { return; }
      // Keep capturing; reconnect with exponential backoff (1 s doubling to 15 s).
      var delay = Math.min(15000, 1000 * Math.pow(2, state.attempt));
      state.attempt += 1;
      setText(el.conn, 'lost, reconnecting in ' + Math.round(delay / 1000) + ' s…');
      state.retryTimer = window.setTimeout(openSocket, delay);
      render();
    };
  }

  // --- status while not streaming ------------------------------------------------------------
  // Without a socket the server cannot tell this page that the class started or ended: ask
  // config_path every status_poll_s (and when the tab comes back), only while not streaming.

  // As the page's template says them (student.html, #session-state).
  var STATUS_TEXT = { draft: 'Not started yet', live: 'Live' };

  function checkStatus() {
    if (state.ended || state.source !== null || !config.config_path) { return; }
    window.fetch(config.config_path, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (fresh) {
        if (!fresh || !fresh.session || state.ended || state.source !== null) { return; }
        if (fresh.session.status === 'ended') { sessionEnded(); return; }
        setText(el.session, STATUS_TEXT[fresh.session.status] || fresh.session.status);
      })
      .catch(function () { /* offline: the next check tries again */ });
  }
  if (config.status_poll_s) { window.setInterval(checkStatus, config.status_poll_s * 1000); }
  document.addEventListener('visibilitychange', function () {
    if (!document.hidden) { checkStatus(); }
  });

  el.webcam.addEventListener('click', function () { start('webcam'); });
  el.screen.addEventListener('click', function () { start('screen'); });
  el.stop.addEventListener('click', function () { stop('Stopped. Nothing is being sent.'); });
  if (el.fallback) {
    el.fallback.addEventListener('click', function () {
      state.serverFallback = true;
      el.fallback.hidden = true;
      showNotice('');
      start(el.fallback.dataset.source || 'webcam');
    });
  }
  window.addEventListener('pagehide', function () { stop(); });
  if (config.session.status === 'ended') {
    state.ended = true;
    setText(el.session, 'Ended');
    showNotice('This session has ended: nothing can be shared any more.');
  }
  render();
})();
