// The global error banner: every rejected command the user did not get an
// inline message for ends up here, until dismissed.

const banner = () => document.querySelector("[data-testid=error-banner]");
const MAX = 4;

/** Shows `message` in the banner (newest last; the oldest drop off after four). */
export function showError(message) {
  const el = banner();
  const list = el.querySelector(".error-list");
  const li = document.createElement("li");
  li.textContent = message;
  list.append(li);
  while (list.children.length > MAX) list.firstElementChild.remove();
  el.hidden = false;
}

/** Empties and hides the banner. */
export function clearErrors() {
  const el = banner();
  el.querySelector(".error-list").replaceChildren();
  el.hidden = true;
}

export function initBanner() {
  banner().querySelector(".error-dismiss").addEventListener("click", clearErrors);
}
