// Shared by every page: dismissible flash messages. Success notes fade on their own;
// errors stay until the agent has read them.
"use strict";
(function () {
  document.querySelectorAll(".toast").forEach(function (toast) {
    var close = toast.querySelector(".toast-close");
    if (close) close.addEventListener("click", function () { toast.remove(); });
    if (toast.classList.contains("toast-success") || toast.classList.contains("toast-info")) {
      setTimeout(function () { toast.remove(); }, 6000);
    }
  });
})();
