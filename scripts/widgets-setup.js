// Loaded between require.js and html-manager/dist/embed-amd.js (nb_ipywidgets_js in
// _config.yml); vendored by scripts/vendor_assets.sh. Two small adapters:
//
// 1. embed-amd.js defines *named* AMD modules and derives the URL of its bundled fonts from
//    their RequireJS module URIs, which by default resolve next to the page (for example
//    chapters/@jupyter-widgets/...). Map those ids to the vendored files, relative to this
//    script, so the fonts load from the book itself, on a page at any depth.
// 2. ipywidgets 8 typesets widget descriptions with the MathJax 2 call MathJax.Hub.Queue;
//    the book loads MathJax 3, where that call throws. Provide it, and turn $...$ in a
//    plain-text label into \(...\) (the book's MathJax does not treat $ as a delimiter).
(function () {
  var here = document.currentScript && document.currentScript.src;
  if (here) {
    var dist = new URL("html-manager/dist/", here).href;
    window.__jupyter_widgets_assets_path__ = dist;
    if (window.requirejs) {
      window.requirejs.config({
        paths: {
          "@jupyter-widgets/html-manager": dist + "html-manager",
          "@jupyter-widgets/html-manager/dist/libembed-amd": dist + "libembed-amd",
        },
      });
    }
  }

  // Registered before embed-amd.js registers its own "load" handler, so this runs first.
  window.addEventListener("load", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub) {
      return;
    }
    mj.Hub = {
      Queue: function (command) {
        var el = command && command[2];
        if (!el || typeof mj.typesetPromise !== "function") {
          return;
        }
        if (el.childElementCount === 0 && /\$[^$]+\$/.test(el.textContent)) {
          el.textContent = el.textContent.replace(/\$([^$]+)\$/g, "\\($1\\)");
        }
        mj.startup.promise
          .then(function () {
            return mj.typesetPromise([el]);
          })
          .catch(function (err) {
            console.warn("MathJax could not typeset a widget label:", err);
          });
      },
    };
  });
})();
