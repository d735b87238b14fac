// Dashboard behaviour with no inline script (the CSP forbids it):
// - charts: <canvas data-chart="ID"> draws the Chart.js config in <script type="application/json" id="ID">;
// - htmx swaps run the same set-up on the new content.
(function () {
  "use strict";

  function drawCharts(root) {
    if (!window.Chart) return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      var config = JSON.parse(source.textContent);
      config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
      canvas.dataset.drawn = "1";
      new window.Chart(canvas, config);
    });
  }

  function setUp(root) {
    drawCharts(root);
    root.querySelectorAll("[data-confirm]").forEach(function (el) {
      if (el.dataset.confirmBound) return;
      el.dataset.confirmBound = "1";
      // htmx sends on submit before this listener could stop it: let htmx ask instead
      // (hx-confirm is read when the request starts, and needs no eval).
      if (el.matches("[hx-post],[hx-get],[hx-put],[hx-patch],[hx-delete]")) {
        el.setAttribute("hx-confirm", el.dataset.confirm);
        return;
      }
      el.addEventListener("submit", function (ev) {
        if (!window.confirm(el.dataset.confirm)) ev.preventDefault();
      });
    });
    root.querySelectorAll("[data-copy]").forEach(function (el) {
      if (el.dataset.copyBound) return;
      el.dataset.copyBound = "1";
      el.addEventListener("click", function () {
        var target = document.getElementById(el.dataset.copy);
        if (target && navigator.clipboard) navigator.clipboard.writeText(target.textContent.trim());
      });
    });
  }

  // Pages are not kept in the tab after sign-out (htmx keeps no history cache either:
  // historyCacheSize 0 in base.html).
  document.addEventListener("submit", function (ev) {
    if (ev.target.matches && ev.target.matches("form[data-sign-out]")) {
      try { window.sessionStorage.clear(); } catch (e) { /* storage off: nothing kept */ }
    }
  });

  document.addEventListener("DOMContentLoaded", function () { setUp(document); });
  document.addEventListener("htmx:load", function (ev) { setUp(ev.target); });
  // An htmx request whose session ended: the server answers 401 with HX-Redirect; other
  // errors show the server's message fragment in the request's target.
  document.addEventListener("htmx:beforeSwap", function (ev) {
    var status = ev.detail.xhr.status;
    if (status >= 400 && status !== 401) { ev.detail.shouldSwap = true; ev.detail.isError = false; }
  });
})();
