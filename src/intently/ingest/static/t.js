/* Intently tracker: Segment-format events to this server's /v1/batch. */
(function (w, d) {
  "use strict";
  // The server fills this in when the URL names the key: {"dnt": true|false}.
  var CFG = /*INTENTLY_CONFIG*/null;
  if (w.intently && w.intently.loaded) return;
  var pre = Array.isArray(w.intently) ? w.intently : [];
  var s = d.currentScript || d.querySelector('script[src*="/t.js"]');
  var src = s ? new URL(s.src, d.baseURI) : null;
  var key = s && (s.getAttribute("data-key") || src.searchParams.get("k"));
  var nav = w.navigator;
  var dnt = CFG ? CFG.dnt : true; // settings unknown: respect it, the default
  var optedOut = nav.doNotTrack === "1" || w.doNotTrack === "1" || nav.globalPrivacyControl === true;
  function noop() {}
  if (!key || (dnt && optedOut)) {
    w.intently = { loaded: true, page: noop, track: noop, identify: noop, group: noop, flush: noop };
    return;
  }
  var endpoint = src.origin + "/v1/batch";
  var queue = [], userId = null, groupId = null, lastUrl = null, lastRef = d.referrer;

  function uuid() {
    if (w.crypto.randomUUID) return w.crypto.randomUUID();
    var b = w.crypto.getRandomValues(new Uint8Array(16));
    return Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
  }
  var m = d.cookie.match(/(?:^|;\s*)itly_aid=([^;]+)/);
  var aid = m ? decodeURIComponent(m[1]) : uuid();
  // Set on every load: the year counts from the last visit.
  d.cookie = "itly_aid=" + encodeURIComponent(aid) + "; max-age=31536000; path=/; SameSite=Lax" +
    (w.location.protocol === "https:" ? "; Secure" : "");

  function now() { return new Date().toISOString(); }
  function send(batch) {
    var body = JSON.stringify({ writeKey: key, sentAt: now(), batch: batch });
    // text/plain: no CORS preflight, and sendBeacon takes it.
    if (nav.sendBeacon && nav.sendBeacon(endpoint, new Blob([body], { type: "text/plain" }))) return;
    if (w.fetch) {
      w.fetch(endpoint, { method: "POST", body: body, keepalive: true, credentials: "omit",
        headers: { "Content-Type": "text/plain" } }).catch(noop);
    }
  }
  function flush() {
    while (queue.length) send(queue.splice(0, 20));
  }
  function push(type, fields) {
    var l = w.location;
    var e = {
      type: type, messageId: uuid(), anonymousId: aid, originalTimestamp: now(),
      context: {
        page: { path: l.pathname, url: l.href, referrer: lastRef, title: d.title, search: l.search },
        userAgent: nav.userAgent, library: { name: "intently-t.js", version: "1" }
      }
    };
    if (userId) e.userId = userId;
    if (groupId) e.context.groupId = groupId;
    for (var k in fields) e[k] = fields[k];
    queue.push(e);
    if (queue.length >= 20) flush();
  }
  function page() {
    var href = w.location.href;
    if (href === lastUrl) return;
    if (lastUrl) lastRef = lastUrl;
    lastUrl = href;
    push("page", { properties: {} });
  }
  var api = {
    loaded: true,
    page: page,
    track: function (name, props) { push("track", { event: String(name), properties: props || {} }); },
    identify: function (id, traits) {
      if (id) userId = String(id);
      push("identify", { traits: traits || {} });
    },
    group: function (id, traits) {
      groupId = String(id);
      push("group", { groupId: groupId, traits: traits || {} });
    },
    flush: flush
  };
  w.intently = api;

  // SPAs: a page per history navigation, after the app sets the title.
  var pushState = w.history.pushState;
  w.history.pushState = function () {
    var r = pushState.apply(this, arguments);
    setTimeout(page, 0);
    return r;
  };
  w.addEventListener("popstate", function () { setTimeout(page, 0); });
  w.addEventListener("pagehide", flush);
  d.addEventListener("visibilitychange", function () { if (d.visibilityState === "hidden") flush(); });
  setInterval(flush, 2000);

  page();
  // Calls queued before load: window.intently = [["track", "Signed Up"]]
  pre.forEach(function (c) { if (api[c[0]]) api[c[0]].apply(api, c.slice(1)); });
})(window, document);
