/*
 * A board that speaks: one sentence about the class for a polite live region, said when
 * something large changes or every 30 s, never on every update (a board updates about once a
 * second per student; a screen reader that read each one would say nothing else).
 *
 * Exposes window.ClassMoodSummary = {text, facts, isLargeChange, Announcer, EVERY_MS, MIN_GAP_MS}.
 * Pure functions on the dashboard's session.update payload (classroom.selectors.dashboard_snapshot):
 * {status, faces_now, participants, attention (0..1 or null), mix {expression: share 0..1},
 *  suppressed (bool), min_group_size}.
 */
(function () {
  'use strict';

  /** A periodic summary at most this often (ms), and only when its words changed (issue 21:
   *  "every 30 s or on a large change"). */
  var EVERY_MS = 30000;
  /** Even a large change waits this long (ms) after the last announcement: one sentence takes a
   *  screen reader about 4-5 s to say at its default rate (~180 words per minute). */
  var MIN_GAP_MS = 5000;
  /** Large changes: faces by max(3, 25 %), attention by 15 points. Our choice: above the
   *  frame-to-frame jitter of the live figures (a face or two missed by the detector, the
   *  10 s window's attention moving by a few points), below what a teacher would act on. */
  var FACES_ABS = 3;
  var FACES_REL = 0.25;
  var ATTENTION_POINTS = 0.15;

  function isNumber(v) { return typeof v === 'number' && isFinite(v); }
  function pct(share) { return Math.round(share * 100) + ' %'; }

  /** Expressions of `mix` with a share > 0, largest first: [[name, share], ...]. */
  function ranked(mix, expressions) {
    return (expressions || Object.keys(mix || {}))
      .filter(function (e) { return mix && mix[e] > 0; })
      .map(function (e) { return [e, mix[e]]; })
      .sort(function (a, b) { return b[1] - a[1]; });
  }

  /** The few numbers a change is judged on. */
  function facts(update, expressions) {
    var top = ranked(update.mix, expressions)[0];
    return {
      status: update.status || null,
      faces: isNumber(update.faces_now) ? update.faces_now : 0,
      attention: isNumber(update.attention) ? update.attention : null,
      top: top ? top[0] : null,
      suppressed: !!update.suppressed
    };
  }

  /**
   * Whether `next` differs enough from `prev` (both from facts()) to be said at once: the status
   * or the group-size rule flips, faces appear or all leave, the face count moves by
   * max(3, 25 %), attention by 15 points or more, or the most common expression changes.
   */
  function isLargeChange(prev, next) {
    if (!prev) { return true; }
    if (prev.status !== next.status || prev.suppressed !== next.suppressed) { return true; }
    if ((prev.faces === 0) !== (next.faces === 0)) { return true; }
    if (Math.abs(next.faces - prev.faces) >= Math.max(FACES_ABS, FACES_REL * prev.faces)) { return true; }
    if (prev.attention !== null && next.attention !== null &&
        Math.abs(next.attention - prev.attention) >= ATTENTION_POINTS - 1e-9) { return true; }
    return prev.top !== null && next.top !== null && prev.top !== next.top;
  }

  /** One sentence about the class, e.g. "Class now: 12 faces in view, attention 80 %, ...". */
  function text(update, expressions) {
    if (update.status === 'ended') { return 'The session has ended.'; }
    if (update.status === 'draft') { return 'The session has not started.'; }
    var faces = isNumber(update.faces_now) ? update.faces_now : 0;
    var streaming = isNumber(update.participants)
      ? update.participants + (update.participants === 1 ? ' student streaming' : ' students streaming')
      : '';
    if (!faces) { return 'Class now: no faces in view' + (streaming ? ', ' + streaming : '') + '.'; }
    var parts = [faces + (faces === 1 ? ' face' : ' faces') + ' in view'];
    if (streaming) { parts.push(streaming); }
    if (update.suppressed) {
      return 'Class now: ' + parts.join(', ') + '. No expression or attention figure is shown until ' +
        update.min_group_size + ' or more faces are in view.';
    }
    if (isNumber(update.attention)) { parts.push('attention ' + pct(update.attention)); }
    var mix = ranked(update.mix, expressions);
    if (mix.length) {
      parts.push('most common expression ' + mix[0][0] + ' ' + pct(mix[0][1]) +
        (mix.length > 1 ? ', then ' + mix[1][0] + ' ' + pct(mix[1][1]) : ''));
    }
    return 'Class now: ' + parts.join(', ') + '.';
  }

  /**
   * Writes text(update) into `node` (a polite live region) when isLargeChange() against what was
   * last said and at least MIN_GAP_MS have passed since the last announcement, or every EVERY_MS
   * when the words changed.
   * The first update (the page's own snapshot) is not said: the page itself shows it.
   * `now` (optional) returns ms; tests pass their own clock.
   */
  function Announcer(node, expressions, now) {
    this.node = node;
    this.expressions = expressions;
    this.now = now || function () { return Date.now(); };
    this.said = null;     // {facts, text, at}
    this.latest = null;   // the last update offered
    this.count = 0;       // announcements made
  }

  /** Consider `update`; returns true when it was said. */
  Announcer.prototype.offer = function (update) {
    this.latest = update;
    var f = facts(update, this.expressions);
    var words = text(update, this.expressions);
    var at = this.now();
    if (this.said === null) {
      this.said = { facts: f, text: words, at: at };
      return false;
    }
    var since = at - this.said.at;
    // The gap is between announcements: the first large change after the page loads is said at once.
    var large = isLargeChange(this.said.facts, f) && (this.count === 0 || since >= MIN_GAP_MS);
    var periodic = since >= EVERY_MS && words !== this.said.text;
    if (!large && !periodic) { return false; }
    this.said = { facts: f, text: words, at: at };
    this.node.textContent = words;
    this.count += 1;
    return true;
  };

  /** Re-offer the latest update (call on a timer, so a change held back by MIN_GAP_MS is said). */
  Announcer.prototype.tick = function () {
    return this.latest ? this.offer(this.latest) : false;
  };

  window.ClassMoodSummary = {
    EVERY_MS: EVERY_MS,
    MIN_GAP_MS: MIN_GAP_MS,
    facts: facts,
    text: text,
    isLargeChange: isLargeChange,
    Announcer: Announcer
  };
})();
