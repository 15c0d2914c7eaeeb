// The confirmation both pages use before anything that cannot be undone (removing a
// device; rotating or revoking a key, revoking a venue): the page's <dialog id="confirm">
// with <p id="confirm-text"> and buttons of value "ok" and "cancel" in a
// <form method="dialog">. Resolves true only for "ok" (Escape and cancel are false).
"use strict";
function SuishenConfirm(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}
