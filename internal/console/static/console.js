// poolgate console: copy buttons, live countdowns and the Live page's
// polling. Every string from the server is set with textContent, never
// parsed as HTML.
(function () {
  'use strict';

  function human(ms) {
    var s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + m + 'm';
    if (m > 0) return m + 'm';
    return s + 's';
  }

  // Copy buttons: <button data-copy="id"> copies the text of #id.
  document.querySelectorAll('button[data-copy]').forEach(function (btn) {
    btn.addEventListener('click', function () {
      var id = btn.getAttribute('data-copy');
      var el = document.getElementById(id);
      var out = document.querySelector('[data-copied-for="' + id + '"]');
      function say(t) { if (out) out.textContent = t; }
      function select() {
        var r = document.createRange();
        r.selectNodeContents(el);
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(r);
        say('Selected: press Ctrl+C (⌘C) to copy.');
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(el.textContent).then(function () { say('Copied.'); }, select);
      } else {
        select();
      }
    });
  });

  // Countdowns: <time class="cd" datetime="…"> keeps counting down.
  function tick() {
    document.querySelectorAll('time.cd[datetime]').forEach(function (t) {
      var d = Date.parse(t.getAttribute('datetime')) - Date.now();
      if (isNaN(d)) return;
      if (d <= 0) {
        t.textContent = 'expired ' + human(-d) + ' ago';
        t.classList.remove('ok', 'warn');
        t.classList.add('bad');
      } else {
        t.textContent = 'in ' + human(d);
      }
    });
  }
  setInterval(tick, 30000);

  // Live page: poll live.json and redraw the numbers and the slot table.
  var live = document.getElementById('live');
  if (!live) return;
  var every = parseInt(live.getAttribute('data-poll-ms'), 10) || 2000;
  var status = document.getElementById('live-status');
  var chart = document.getElementById('live-chart');
  var stopped = false;

  function set(id, v) { var el = document.getElementById(id); if (el) el.textContent = String(v); }

  function row(a) {
    var tr = document.createElement('tr');
    var th = document.createElement('th');
    th.scope = 'row';
    th.className = 'email';
    th.textContent = a.email;
    var td = document.createElement('td');
    td.className = 'slots';
    var m = document.createElement('meter');
    m.min = 0;
    m.max = a.maxJobs;
    m.value = a.executing;
    m.setAttribute('aria-label', 'slots in use of ' + a.email);
    m.textContent = a.executing + '/' + a.maxJobs;
    var n = document.createElement('span');
    n.className = 'num';
    n.textContent = a.executing + '/' + a.maxJobs;
    td.appendChild(m);
    td.appendChild(document.createTextNode(' '));
    td.appendChild(n);
    tr.appendChild(th);
    tr.appendChild(td);
    return tr;
  }

  function render(s) {
    set('live-at', s.at);
    set('live-executing', s.executing);
    set('live-free', s.free);
    set('live-queued', s.queued);
    set('live-hidden', s.hidden ? 'and ' + s.hidden + ' more accounts' : '');
    var body = document.getElementById('live-accounts');
    var rows = document.createDocumentFragment();
    if (s.accounts.length === 0) {
      var tr = document.createElement('tr');
      var td = document.createElement('td');
      td.colSpan = 2;
      td.textContent = 'No account can take jobs right now.';
      tr.appendChild(td);
      rows.appendChild(tr);
    }
    s.accounts.forEach(function (a) { rows.appendChild(row(a)); });
    body.replaceChildren(rows);
  }

  function poll() {
    if (stopped) return;
    fetch('/console/live.json', { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      if (r.status === 401) {
        stopped = true;
        status.textContent = 'Signed out: reload to sign in again.';
        return null;
      }
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }).then(function (s) {
      if (!s) return;
      render(s);
      status.textContent = 'Updates every ' + every + ' ms.';
    }).catch(function () {
      status.textContent = 'Could not refresh; retrying.';
    }).finally(function () {
      if (!stopped) setTimeout(poll, every);
    });
  }
  setTimeout(poll, every);
  // The chart changes by the minute: redraw it every 15 s.
  setInterval(function () {
    if (!stopped && chart) chart.src = '/console/live/chart.svg?t=' + Date.now();
  }, 15000);
})();
