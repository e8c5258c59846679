// Display formatting of engine numbers (counts, bytes, durations, losses).
// Nothing here derives training quantities; it only prints what Rust sent.

const DASH = "—";

/** 1234 → "1.2 K", 1_200_000 → "1.2 M", 950 → "950". */
export function count(n) {
  if (n == null || !Number.isFinite(n)) return DASH;
  const abs = Math.abs(n);
  const units = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
  for (const [size, unit] of units) {
    if (abs >= size) return `${trim(n / size)} ${unit}`;
  }
  return String(Math.round(n));
}

/** Bytes in binary units: 362_000_000 → "345.2 MiB". */
export function bytes(n) {
  if (n == null || !Number.isFinite(n)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${trim(v)} ${units[i]}`;
}

function trim(v) {
  const digits = Math.abs(v) >= 100 ? 0 : 1;
  return v.toFixed(digits).replace(/\.0$/, "");
}

/** Seconds → "42 s", "3 min 05 s", "1 h 02 min". */
export function duration(s) {
  if (s == null || !Number.isFinite(s) || s < 0) return DASH;
  const total = Math.round(s);
  if (total < 60) return `${total} s`;
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  return `${m} min ${String(sec).padStart(2, "0")} s`;
}

/** A loss or other small real: 4 significant digits. */
export function num(x, digits = 4) {
  if (x == null || !Number.isFinite(x)) return DASH;
  return Number(x.toPrecision(digits)).toString();
}

/** Tokens per second: "5.1 K tok/s". */
export function rate(x) {
  if (x == null || !Number.isFinite(x)) return DASH;
  return `${count(x)} tok/s`;
}

/** The last path component (works for / and \ separators). */
export function basename(path) {
  if (!path) return "";
  const parts = String(path).split(/[\\/]/).filter(Boolean);
  return parts[parts.length - 1] ?? String(path);
}
