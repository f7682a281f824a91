/*
 * ckanext-jupyternotebook-session: a JupyterLab 4 extension in plain
 * JavaScript, shipped ready to load (no build step; the npm registry cannot
 * be reached where this project is built).
 *
 * JupyterLab loads a federated extension by running this script, then calling
 * window._JUPYTERLAB[name].init(shareScope) and .get('./extension'), which
 * resolves to a factory returning the module. Everything of JupyterLab's and
 * Lumino's used here comes from that share scope (the application's own
 * singletons), never from copies.
 *
 * What it does, in a session started by the portal (a named server of the
 * hub): the end and the time left in the top bar ("Session ends 14:32 ·
 * 18 min left"), from the seconds left the bridge reports (re-synced every
 * minute; between syncs it counts down on the page's monotonic clock, never
 * the browser's wall clock); notifications 5 and 1 minutes before the end
 * and before an idle timeout, with Download / Save to portal / Extend; the
 * same three as commands. It talks only to the bridge's visitor routes
 * (/services/bridge/session/<server>, hub OAuth); the page holds no CKAN
 * credential.
 */
(function () {
  'use strict';

  var NAME = 'ckanext-jupyternotebook-session';
  var PLUGIN_ID = NAME + ':plugin';
  var SYNC_EVERY_MS = 60 * 1000;
  var WARN_AT = [300, 60]; // seconds before the end (and before the idle timeout)
  var SKIP_DIRS = { data: true, '.cache': true, '.local': true, '.ipynb_checkpoints': true };

  var shareScope = null;
  var lib = null; // JupyterLab's modules, from the share scope

  // -- the share scope ----------------------------------------------------

  function versionKey(v) {
    return String(v).split(/[.+-]/).map(function (p) {
      var n = parseInt(p, 10);
      return isNaN(n) ? -1 : n;
    });
  }

  function newer(a, b) {
    var x = versionKey(a), y = versionKey(b);
    for (var i = 0; i < Math.max(x.length, y.length); i++) {
      var d = (x[i] || 0) - (y[i] || 0);
      if (d) {
        return d > 0;
      }
    }
    return false;
  }

  async function shared(pkg) {
    var versions = shareScope && shareScope[pkg];
    if (!versions) {
      throw new Error(NAME + ': ' + pkg + ' is not shared by this JupyterLab');
    }
    var best = null;
    Object.keys(versions).forEach(function (v) {
      if (best === null || newer(v, best)) {
        best = v;
      }
    });
    var entry = versions[best];
    var factory = await entry.get();
    entry.loaded = 1;
    return factory();
  }

  async function loadLib() {
    var mods = await Promise.all([
      shared('@jupyterlab/apputils'),
      shared('@jupyterlab/coreutils'),
      shared('@lumino/widgets')
    ]);
    return { apputils: mods[0], coreutils: mods[1], widgets: mods[2] };
  }

  // -- text -----------------------------------------------------------------

  function clock(date) {
    // 24-hour, in the visitor's time zone: "Session ends 14:32"
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  }

  function left(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) {
      return seconds + ' s left';
    }
    var minutes = Math.ceil(seconds / 60);
    if (minutes < 60) {
      return minutes + ' min left';
    }
    var h = Math.floor(minutes / 60), m = minutes % 60;
    return h + ' h ' + (m < 10 ? '0' : '') + m + ' min left';
  }

  function inMinutes(seconds) {
    var minutes = Math.max(1, Math.ceil(seconds / 60));
    return minutes === 1 ? '1 minute' : minutes + ' minutes';
  }

  // -- the bridge -----------------------------------------------------------

  function Bridge(base, server) {
    this.url = base + 'session/' + encodeURIComponent(server);
    this.info = null;
  }

  Bridge.prototype.session = async function () {
    var resp = await fetch(this.url, {
      credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' }
    });
    var body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null; // the hub's login page: the sign-in is over
    }
    if (resp.status === 404 || !body) {
      return { ended: true, status: resp.status, body: body };
    }
    if (!resp.ok) {
      throw new Error((body && body.message) || 'The notebook service answered ' + resp.status);
    }
    this.info = body;
    return body;
  };

  Bridge.prototype.post = async function (action, payload, retried) {
    if (!this.info) {
      await this.session();
    }
    var resp = await fetch(this.url + '/' + action, {
      method: 'POST',
      credentials: 'same-origin',
      cache: 'no-store',
      headers: {
        Accept: 'application/json',
        'Content-Type': 'application/json',
        'X-XSRFToken': (this.info && this.info.xsrf_token) || ''
      },
      body: JSON.stringify(payload || {})
    });
    var body = {};
    try {
      body = await resp.json();
    } catch (e) {
      body = { error: 'unavailable', message: 'The notebook service is not answering.' };
    }
    if (resp.status === 403 && body.error === 'not_logged_in' && !retried) {
      await this.session(); // a new sign-in and token, once
      return this.post(action, payload, true);
    }
    return { ok: resp.ok, status: resp.status, body: body };
  };

  // -- the plugin -----------------------------------------------------------

  function activate(app) {
    var PageConfig = lib.coreutils.PageConfig;
    var server = PageConfig.getOption('hubServerName');
    var hubPrefix = PageConfig.getOption('hubPrefix');
    if (!server || !hubPrefix) {
      return; // not a session of the portal (no named server of a hub)
    }
    var base = (PageConfig.getOption('hubHost') || '') +
      hubPrefix.replace(/hub\/?$/, '') + 'services/bridge/';
    var bridge = new Bridge(base, server);
    var Notification = lib.apputils.Notification;

    var state = {
      syncedAt: 0, // performance.now() of the last answer
      secondsLeft: null,
      idleLeft: null,
      expiresAt: null,
      warned: {}, // "end:<expires_at>:300" -> true
      ended: false
    };

    injectStyle();
    var node = document.createElement('div');
    node.className = 'jp-ckan-session-time';
    node.setAttribute('role', 'status');
    node.textContent = 'Session…';
    var item = new lib.widgets.Widget({ node: node });
    item.id = 'jp-ckan-session-time';
    app.shell.add(item, 'top', { rank: 900 });
    node.addEventListener('click', function () {
      showActions();
    });

    function remaining() {
      if (state.secondsLeft === null) {
        return null;
      }
      return state.secondsLeft - (performance.now() - state.syncedAt) / 1000;
    }

    function idleRemaining() {
      if (state.idleLeft === null) {
        return null;
      }
      return state.idleLeft - (performance.now() - state.syncedAt) / 1000;
    }

    function endText() {
      return state.expiresAt ? clock(new Date(state.expiresAt)) : '';
    }

    function render() {
      if (state.ended) {
        node.textContent = 'Session ended';
        node.title = 'This session has ended and its changes were discarded.';
        node.classList.add('jp-mod-ended');
        return;
      }
      var secs = remaining();
      if (secs === null) {
        return;
      }
      node.textContent = 'Session ends ' + endText() + ' · ' + left(secs);
      node.title = 'This is a temporary session: at ' + endText() +
        ' it ends and every change made in it is discarded. Download your work or ' +
        'save it to the portal to keep it.' +
        (bridge.info && bridge.info.idle_timeout
          ? ' It also ends after ' + inMinutes(bridge.info.idle_timeout) + ' without use.'
          : '');
      node.classList.toggle('jp-mod-warn', secs <= WARN_AT[0]);
    }

    function actions() {
      var info = bridge.info || {};
      return [
        {
          label: 'Download',
          caption: 'A zip of your files (not data/)',
          displayType: 'accent',
          callback: function () { download(); }
        },
        {
          label: 'Save to portal',
          caption: info.can_save ? 'Save a file as a resource of the dataset'
            : (info.save_message || 'Saving to the portal is not possible here.'),
          callback: function () { saveToPortal(); }
        },
        {
          label: 'Extend',
          caption: info.can_extend ? 'Give this session more time'
            : (info.extend_message || 'This session cannot be extended.'),
          callback: function () { extend(); }
        }
      ];
    }

    // JupyterLab cuts toast messages at 140 characters: the messages stay
    // short, the buttons' captions (hover) say why an action is refused
    function refusals() {
      var info = bridge.info || {};
      return info.save_refusal === 'login_required'
        ? ' To save to the portal, log in with edit rights.' : '';
    }

    function showActions() {
      var secs = remaining();
      var message = secs === null ? 'Temporary session: its changes are discarded at its end.'
        : 'Temporary session: it ends at ' + endText() + ' (' + left(secs) +
          ') and its changes are then discarded.';
      Notification.info(message + refusals(), { autoClose: false, actions: actions() });
    }

    // The tightest threshold crossed warns once; the wider ones crossed with
    // it count as warned (a page opened 50 s before the end shows one warning).
    function crossed(kind, secs) {
      if (secs === null || secs <= 0) {
        return null;
      }
      var at = WARN_AT.filter(function (t) { return secs <= t; }).pop();
      if (at === undefined) {
        return null;
      }
      var key = function (t) { return kind + ':' + t; };
      var fresh = !state.warned[key(at)];
      WARN_AT.forEach(function (t) {
        if (t >= at) {
          state.warned[key(t)] = true;
        }
      });
      return fresh ? at : null;
    }

    // JupyterLab shows a notification as a toast only once its notification
    // plugin listens; one emitted earlier (the first sync of a page opened
    // with little time left) was kept but never shown. Warn once the
    // application is restored, when every plugin is active.
    var restored = false;
    app.restored.then(function () { restored = true; warn(); });

    function warn() {
      if (!restored) {
        return;
      }
      var secs = remaining();
      var idle = idleRemaining();
      if (crossed('end:' + state.expiresAt, secs) !== null) {
        Notification.warning(
          'This session ends in ' + inMinutes(secs) + ' at ' + endText() +
          '; its changes are then discarded.' + refusals(),
          { autoClose: false, actions: actions() });
      }
      if (crossed('idle', idle) !== null) {
        Notification.warning(
          'This session ends in ' + inMinutes(idle) + ' if it stays unused; its changes ' +
          'are then discarded.' + refusals(),
          { autoClose: false, actions: actions() });
      }
      if (idle !== null && idle > WARN_AT[0] + 30) {
        // in use again: warn again when it next falls idle
        WARN_AT.forEach(function (t) { delete state.warned['idle:' + t]; });
      }
    }

    async function sync() {
      var answer;
      try {
        answer = await bridge.session();
      } catch (e) {
        console.warn(NAME + ': ' + e.message);
        return;
      }
      if (answer.ended) {
        if (!state.ended) {
          state.ended = true;
          render();
          Notification.error('This session has ended and its changes were discarded.',
            { autoClose: false });
        }
        return;
      }
      state.syncedAt = performance.now();
      state.secondsLeft = answer.seconds_left;
      state.idleLeft = answer.idle_seconds_left === null ? null : answer.idle_seconds_left;
      state.expiresAt = answer.expires_at;
      render();
      warn();
    }

    async function saveOpenDocuments() {
      if (app.commands.hasCommand('docmanager:save-all')) {
        try {
          await app.commands.execute('docmanager:save-all');
        } catch (e) {
          console.warn(NAME + ': saving open documents: ' + e);
        }
      }
    }

    async function download() {
      await saveOpenDocuments();
      var a = document.createElement('a');
      a.href = bridge.url + '/download';
      a.download = '';
      a.rel = 'noopener';
      document.body.appendChild(a);
      a.click();
      a.remove();
    }

    async function extend() {
      var result = await bridge.post('extend');
      if (result.ok) {
        bridge.info = result.body;
        state.syncedAt = performance.now();
        state.secondsLeft = result.body.seconds_left;
        state.expiresAt = result.body.expires_at;
        render();
        Notification.success('Session extended: it now ends at ' + endText() + '.',
          { autoClose: 5000 });
      } else {
        Notification.warning(result.body.message || 'The session could not be extended.',
          { autoClose: false });
      }
    }

    async function homeFiles(path, depth, out) {
      var listing = await app.serviceManager.contents.get(path, { content: true });
      var items = (listing.content || []).slice().sort(function (a, b) {
        return a.path < b.path ? -1 : 1;
      });
      for (var i = 0; i < items.length && out.length < 500; i++) {
        var it = items[i];
        if (it.type === 'directory') {
          if (depth < 4 && !SKIP_DIRS[it.name] && it.name.charAt(0) !== '.') {
            await homeFiles(it.path, depth + 1, out);
          }
        } else {
          out.push(it.path);
        }
      }
      return out;
    }

    function currentFile() {
      var widget = app.shell.currentWidget;
      var context = widget && widget.context;
      return context && context.path ? context.path : null;
    }

    async function saveToPortal() {
      var info = bridge.info || (await bridge.session());
      if (!info.can_save) {
        Notification.warning(info.save_message ||
          'Log in to the portal with edit rights to save.', { autoClose: false });
        return;
      }
      await saveOpenDocuments();
      var files = await homeFiles('', 0, []);
      if (!files.length) {
        Notification.info('There is no file to save in this session yet.', { autoClose: 5000 });
        return;
      }
      var form = saveForm(files, currentFile() || info.notebook_path, info);
      var result = await lib.apputils.showDialog({
        title: 'Save to portal',
        body: new lib.widgets.Widget({ node: form.node }),
        buttons: [
          lib.apputils.Dialog.cancelButton(),
          lib.apputils.Dialog.okButton({ label: 'Save' })
        ]
      });
      if (!result.button.accept) {
        return;
      }
      var choice = form.value();
      var id = Notification.emit('Saving ' + choice.path + ' to the portal…', 'in-progress',
        { autoClose: false });
      var answer = await bridge.post('save', choice);
      if (answer.ok) {
        Notification.update({
          id: id,
          message: 'Saved ' + choice.path + ' to the dataset "' + info.dataset.title + '".',
          type: 'success',
          autoClose: 8000,
          actions: [{
            label: 'Open in the portal',
            callback: function () { window.open(answer.body.url, '_blank', 'noopener'); }
          }]
        });
      } else {
        Notification.update({
          id: id,
          message: answer.body.message || 'The file could not be saved.',
          type: 'error',
          autoClose: false
        });
      }
    }

    function saveForm(files, preferred, info) {
      var node = document.createElement('div');
      node.className = 'jp-ckan-save-form';
      var fileLabel = document.createElement('label');
      fileLabel.textContent = 'File of this session';
      var select = document.createElement('select');
      select.name = 'path';
      files.forEach(function (p) {
        var opt = document.createElement('option');
        opt.value = p;
        opt.textContent = p;
        select.appendChild(opt);
      });
      if (preferred && files.indexOf(preferred) >= 0) {
        select.value = preferred;
      }
      fileLabel.appendChild(select);
      var nameLabel = document.createElement('label');
      nameLabel.textContent = 'Name in the portal';
      var name = document.createElement('input');
      name.type = 'text';
      name.name = 'name';
      name.placeholder = select.value.split('/').pop();
      select.addEventListener('change', function () {
        name.placeholder = select.value.split('/').pop();
      });
      nameLabel.appendChild(name);
      node.appendChild(fileLabel);
      node.appendChild(nameLabel);
      var replace = null;
      if (info.notebook_resource_id) {
        var replaceLabel = document.createElement('label');
        replaceLabel.className = 'jp-ckan-save-replace';
        replace = document.createElement('input');
        replace.type = 'checkbox';
        replace.name = 'replace';
        replaceLabel.appendChild(replace);
        replaceLabel.appendChild(document.createTextNode(
          ' Replace the notebook this session was opened from' +
          (info.notebook_path ? ' (' + info.notebook_path + ')' : '') +
          ' with a new upload'));
        node.appendChild(replaceLabel);
      }
      var note = document.createElement('p');
      note.textContent = 'The file becomes a resource of "' + info.dataset.title +
        '", saved as you, with the portal\'s own checks.';
      node.appendChild(note);
      return {
        node: node,
        value: function () {
          var v = { path: select.value, replace: !!(replace && replace.checked) };
          if (name.value.trim()) {
            v.name = name.value.trim();
          }
          return v;
        }
      };
    }

    app.commands.addCommand('ckan-session:download', {
      label: 'Download my work', execute: download
    });
    app.commands.addCommand('ckan-session:save', {
      label: 'Save to portal…', execute: saveToPortal
    });
    app.commands.addCommand('ckan-session:extend', {
      label: 'Extend this session', execute: extend
    });

    function tick() {
      if (state.ended) {
        return;
      }
      render();
      warn();
      var secs = remaining();
      if (secs !== null && secs <= 0) {
        void sync();
      }
    }

    void sync();
    setInterval(function () { void sync(); }, SYNC_EVERY_MS);
    setInterval(tick, 1000);
  }

  function injectStyle() {
    var style = document.createElement('style');
    style.textContent = [
      '.jp-ckan-session-time { align-self: center; padding: 0 10px; white-space: nowrap;',
      '  font-size: var(--jp-ui-font-size1); color: var(--jp-ui-font-color1); cursor: pointer; }',
      '.jp-ckan-session-time.jp-mod-warn { color: var(--jp-warn-color0); font-weight: 600; }',
      '.jp-ckan-session-time.jp-mod-ended { color: var(--jp-error-color0); font-weight: 600; }',
      '.jp-ckan-save-form label { display: block; margin: 0 0 10px; }',
      '.jp-ckan-save-form select, .jp-ckan-save-form input[type=text] {',
      '  display: block; width: 100%; margin-top: 4px; }',
      '.jp-ckan-save-form .jp-ckan-save-replace input { margin-right: 4px; }'
    ].join('\n');
    document.head.appendChild(style);
  }

  var plugin = {
    id: PLUGIN_ID,
    description: 'The session\'s time left, warnings, Download my work, Save to portal and Extend.',
    autoStart: true,
    requires: [],
    activate: activate
  };

  var container = {
    init: function (scope) {
      shareScope = scope;
    },
    get: function (module) {
      if (module !== './extension' && module !== './index') {
        return Promise.reject(new Error('Module "' + module + '" does not exist in container.'));
      }
      return loadLib().then(function (loaded) {
        lib = loaded;
        return function () {
          return { __esModule: true, default: [plugin] };
        };
      });
    }
  };

  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB[NAME] = container;
})();
