// flightdeck dashboard: follow the agent's event stream and swap in the freshly rendered
// <main> on each update. Read-only: it only ever sends GET requests.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var board = document.getElementById("board");
  if (!window.EventSource || !window.fetch || !board) { return; }
  var base = location.pathname.replace(/\/$/, "");
  var pending = false, again = false;
  function refresh() {
    if (pending) { again = true; return; }
    pending = true;
    fetch(base + "/dashboard/fragment", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) { board.innerHTML = html; live.textContent = "live"; })
      .catch(function (e) { live.textContent = "update failed (" + e.message + "), retrying"; })
      .then(function () { pending = false; if (again) { again = false; refresh(); } });
  }
  function connect() {
    var source = new EventSource(base + "/dashboard/events", { withCredentials: true });
    source.onopen = function () { live.textContent = "live"; refresh(); };
    source.addEventListener("update", refresh);
    source.onerror = function () {
      live.textContent = "disconnected, reconnecting";
      if (source.readyState === EventSource.CLOSED) { setTimeout(connect, 2000); }
    };
  }
  connect();
})();
