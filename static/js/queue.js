// The queue: a whole row opens its ticket, and changing a filter applies it at once.
"use strict";
(function () {
  var table = document.querySelector(".qtable");
  if (table) {
    table.addEventListener("click", function (event) {
      if (event.target.closest("a, button, input, select, [tabindex]")) return;
      var row = event.target.closest("tr[data-href]");
      if (row) window.location.assign(row.dataset.href);
    });
  }
  var filters = document.getElementById("filters");
  if (filters) {
    filters.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () { filters.requestSubmit(); });
    });
    // Empty fields stay out of the address: shorter, shareable URLs.
    filters.addEventListener("formdata", function (event) {
      var empty = [];
      event.formData.forEach(function (value, key) { if (value === "") empty.push(key); });
      empty.forEach(function (key) { event.formData.delete(key); });
    });
  }
})();
