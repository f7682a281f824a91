/* Open in Jupyter: while the launch POST is in flight (it returns only when
 * the notebook server is ready), cover the page with a progress overlay that
 * counts the elapsed seconds. The form still submits normally, so the browser
 * follows the 303 to JupyterLab by itself. */
this.ckan.module("jupyternotebook-launch", function ($) {
  "use strict";
  return {
    options: {
      waiting: "Starting your notebook…",
      elapsed: "Elapsed: {seconds} s",
      hint: ""
    },

    initialize: function () {
      $.proxyAll(this, /_on/);
      this.el.on("submit", this._onSubmit);
      // Coming back with the browser's back button must not show a stale
      // overlay (the page may be restored from the bfcache).
      $(window).on("pageshow", this._onPageShow);
    },

    _onSubmit: function () {
      if (this.submitted) {
        return false; // one launch per click
      }
      this.submitted = true;
      this.el.find("button[type=submit]").prop("disabled", true)
        .attr("aria-busy", "true");
      this._showOverlay();
      return true;
    },

    _onPageShow: function (event) {
      if (event.originalEvent && event.originalEvent.persisted) {
        this._hideOverlay();
      }
    },

    _showOverlay: function () {
      var start = Date.now();
      var overlay = $(
        '<div class="jupyternotebook-overlay" role="status" aria-live="polite">' +
          '<div class="jupyternotebook-overlay-box">' +
            '<div class="jupyternotebook-spinner" aria-hidden="true"></div>' +
            '<p class="jupyternotebook-overlay-title"></p>' +
            '<p class="jupyternotebook-overlay-elapsed"></p>' +
            '<p class="jupyternotebook-overlay-hint"></p>' +
          "</div>" +
        "</div>"
      );
      overlay.find(".jupyternotebook-overlay-title").text(this.options.waiting);
      overlay.find(".jupyternotebook-overlay-hint").text(this.options.hint || "");
      var elapsedEl = overlay.find(".jupyternotebook-overlay-elapsed");
      var template = this.options.elapsed;
      var tick = function () {
        var seconds = Math.floor((Date.now() - start) / 1000);
        elapsedEl.text(template.replace("{seconds}", seconds));
      };
      tick();
      this.timer = window.setInterval(tick, 1000);
      this.overlay = overlay.appendTo(document.body);
    },

    _hideOverlay: function () {
      window.clearInterval(this.timer);
      if (this.overlay) {
        this.overlay.remove();
        this.overlay = null;
      }
      this.submitted = false;
      this.el.find("button[type=submit]").prop("disabled", false)
        .removeAttr("aria-busy");
    }
  };
});
