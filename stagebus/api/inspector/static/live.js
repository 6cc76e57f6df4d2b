// stagebus inspector: refresh a page in progress in place. Polls the page's fragment URL (the same
// query string plus fragment=1) and swaps the #live element's content, so the filters (in the URL
// and the forms outside #live) and the scroll position stay as they are. Stops once the server
// says the page is no longer in progress (X-Inspector-Live: 0). No dependencies, no build step.
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box || box.getAttribute("data-live") !== "1" || !window.fetch) { return; }
  var every = Number(box.getAttribute("data-every")) || 2000;
  function tick() {
    fetch(box.getAttribute("data-url"), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        var live = response.headers.get("X-Inspector-Live") === "1";
        return response.text().then(function (html) {
          var x = window.scrollX, y = window.scrollY;
          box.innerHTML = html;
          window.scrollTo(x, y);
          box.setAttribute("data-refreshed", String(Number(box.getAttribute("data-refreshed") || "0") + 1));
          if (live) { window.setTimeout(tick, every); } else { box.setAttribute("data-live", "0"); }
        });
      })
      .catch(function () { window.setTimeout(tick, every * 2); });
  }
  window.setTimeout(tick, every);
})();
