// jobq dashboard: live numbers without reloading the page, and confirmations.
// Live data arrives as server-sent events; when EventSource is missing or the
// stream keeps failing, the same data is polled from /api/snapshot instead.
// Only text of cells marked data-f and the job's state/progress change, so
// whatever the user selected, scrolled or typed stays as it was.
(function () {
  "use strict";
  var body = document.body;
  var status = document.getElementById("live");
  var eventsUrl = body.getAttribute("data-events");
  var snapshotUrl = body.getAttribute("data-snapshot");
  var job = body.getAttribute("data-job") || "";
  var POLL_MS = 5000;
  var failures = 0;
  var polling = null;

  function say(text) { if (status) { status.textContent = text; } }

  function fmtPct(v) { return (v * 100).toFixed(1) + "%"; }

  function setText(el, text) { if (el && el.textContent !== text) { el.textContent = text; } }

  function apply(snap) {
    (snap.queues || []).forEach(function (q) {
      var scopes = document.querySelectorAll('[data-q="' + CSS.escape(q.queue) + '"]');
      scopes.forEach(function (scope) {
        Object.keys(q.counts).forEach(function (state) {
          setText(scope.querySelector('[data-f="' + state + '"]'), String(q.counts[state]));
        });
        setText(scope.querySelector('[data-f="oldest"]'), q.oldest_waiting_age_seconds.toFixed(1));
        setText(scope.querySelector('[data-f="workers"]'), String(q.workers_alive));
        setText(scope.querySelector('[data-f="failure_rate"]'), fmtPct(q.failure_rate));
      });
    });
    if (snap.job) {
      setText(document.getElementById("job-state"), snap.job.state);
      setText(document.getElementById("job-attempts"), String(snap.job.attempts_made));
      var bar = document.getElementById("job-progress");
      var label = document.getElementById("job-progress-label");
      if (bar && typeof snap.job.progress === "number") {
        bar.value = snap.job.progress;
        setText(label, snap.job.progress + "%");
      }
    }
    var when = snap.taken_at ? new Date(snap.taken_at * 1000) : new Date();
    say("live: updated " + when.toLocaleTimeString());
  }

  function withJob(url) {
    if (!job) { return url; }
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "job=" + encodeURIComponent(job);
  }

  function poll() {
    fetch(withJob(snapshotUrl), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (snap) { apply(snap); say(status ? status.textContent.replace("live:", "live (polling):") : ""); })
      .catch(function () { say("live (polling): server unreachable, retrying"); });
  }

  function startPolling() {
    if (polling) { return; }
    poll();
    polling = window.setInterval(poll, POLL_MS);
  }

  function start() {
    if (!eventsUrl || !snapshotUrl || !status) { return; }
    if (!window.EventSource || body.hasAttribute("data-poll")) { startPolling(); return; }
    var source = new EventSource(withJob(eventsUrl));
    source.onmessage = function (ev) { failures = 0; apply(JSON.parse(ev.data)); };
    source.onerror = function () {
      failures += 1;
      say("live: reconnecting…");
      if (failures >= 3) { source.close(); startPolling(); }
    };
  }

  // Destructive buttons ask first (inline handlers are blocked by the CSP).
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { ev.preventDefault(); }
  });

  // The "edit data" box of a dead-letter replay is sent only when ticked.
  document.addEventListener("change", function (ev) {
    var box = ev.target;
    if (box && box.id === "edit-data") {
      var area = document.getElementById("replay-data");
      if (area) { area.disabled = !box.checked; }
    }
  });

  start();
})();
