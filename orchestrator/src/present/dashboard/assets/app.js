// battleplan's dashboard: live without a reload. The server sends the log's position whenever
// an event is recorded (server-sent events); the page then fetches itself again and swaps its
// <main>. A reconnect resumes after the last position seen (Last-Event-ID). Countdowns tick
// here, from the instants the server wrote.
(function () {
  "use strict";
  var body = document.body;

  // The server's clock, not the browser's: a rehearsal runs on a clock of its own.
  var offset = 0;
  function sync(from) {
    var serverNow = Number(from.getAttribute("data-now"));
    offset = isFinite(serverNow) && serverNow > 0 ? serverNow - Date.now() : 0;
  }
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function tick() {
    var now = Date.now() + offset;
    var nodes = document.querySelectorAll("[data-countdown]");
    for (var i = 0; i < nodes.length; i++) {
      var at = Number(nodes[i].getAttribute("data-countdown"));
      if (!isFinite(at)) { continue; }
      var left = Math.round((at - now) / 1000);
      var sign = left < 0 ? "overdue by " : "in ";
      left = Math.abs(left);
      var days = Math.floor(left / 86400);
      var rest = left % 86400;
      var text = sign + (days > 0 ? days + " d " : "") + pad(Math.floor(rest / 3600)) + ":" +
        pad(Math.floor(rest % 3600 / 60)) + ":" + pad(rest % 60);
      nodes[i].textContent = text;
    }
  }

  function wireFullscreen() {
    var button = document.querySelector("[data-fullscreen]");
    if (button && document.documentElement.requestFullscreen) {
      button.addEventListener("click", function () {
        document.documentElement.requestFullscreen().catch(function () {});
      });
    }
  }

  // At most one refetch at a time and one a second: a busy log (a batch of sends) coalesces
  // into the next refetch instead of one per event.
  var refreshing = false;
  var again = false;
  var lastRefresh = 0;
  var MIN_GAP = 1000;
  function refresh() {
    if (refreshing) { again = true; return; }
    var wait = lastRefresh + MIN_GAP - Date.now();
    if (wait > 0) { refreshing = true; window.setTimeout(function () { refreshing = false; refresh(); }, wait); return; }
    // Someone is typing (a customer's id, an instant): leave the page as it is until they are done.
    var active = document.activeElement;
    if (active && active.tagName === "INPUT" && document.getElementById("main").contains(active)) {
      refreshing = true;
      window.setTimeout(function () { refreshing = false; refresh(); }, MIN_GAP);
      return;
    }
    refreshing = true;
    lastRefresh = Date.now();
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected || response.status === 401) { window.location.reload(); return null; }
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        var next = new DOMParser().parseFromString(html, "text/html");
        var main = next.getElementById("main");
        if (main) {
          // The sections a reader opened stay open.
          var open = [];
          var shown = document.querySelectorAll("#main details");
          for (var i = 0; i < shown.length; i++) { open.push(shown[i].open); }
          document.getElementById("main").innerHTML = main.innerHTML;
          var fresh = document.querySelectorAll("#main details");
          for (var j = 0; j < fresh.length && j < open.length; j++) { fresh[j].open = open[j]; }
          body.setAttribute("data-position", next.body.getAttribute("data-position") || "");
          body.setAttribute("data-now", next.body.getAttribute("data-now") || "");
          sync(body);
          var shown = document.getElementById("position");
          if (shown) { shown.textContent = body.getAttribute("data-position"); }
          wireFullscreen();
          tick();
        }
      })
      .catch(function () { /* The next event tries again. */ })
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  function listen() {
    if (!body.hasAttribute("data-live") || !window.EventSource) { return; }
    var after = body.getAttribute("data-position") || "0";
    var source = new EventSource("/dashboard/events?after=" + encodeURIComponent(after));
    source.addEventListener("position", function (event) {
      var seen = Number(body.getAttribute("data-position") || "0");
      if (Number(event.data) > seen) { refresh(); }
    });
    source.addEventListener("error", function () {
      // The browser reconnects by itself after a dropped stream; a refused one (the session
      // ended, the daemon restarted) it gives up: say so, and fetch the page, which leads to
      // the login when the session is gone.
      if (source.readyState === EventSource.CLOSED) {
        var state = document.getElementById("live-state");
        if (state) { state.textContent = "not live: the page stopped following the log; reload it"; }
        refresh();
      }
    });
  }

  sync(body);
  tick();
  window.setInterval(tick, 1000);
  wireFullscreen();
  listen();
})();
