// Test harness: serves ui/ over HTTP with the app's own CSP header (from
// src-tauri/tauri.conf.json, so a CSP violation fails the test), launches
// Debian's headless Chromium through puppeteer-core, injects the fake Tauri
// API with the recorded fixtures, and collects console errors, page errors
// and securitypolicyviolation events.

import http from "node:http";
import { readFile, mkdir } from "node:fs/promises";
import { readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { installFakeTauri } from "./fake-tauri.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const UI = path.resolve(here, "..");
const REPO = path.resolve(UI, "..");
export const CSP = JSON.parse(readFileSync(path.join(REPO, "src-tauri/tauri.conf.json"), "utf8")).app.security.csp;
export const fixtures = JSON.parse(readFileSync(path.join(here, "fixtures/app.json"), "utf8"));
export const SHOTS = process.env.UI_SHOTS ?? "/tmp/ui-shots";

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".json": "application/json" };

function findChromium() {
  const candidates = [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
  const found = candidates.find((c) => c && existsSync(c));
  if (!found) throw new Error("Chromium not found: install Debian's `chromium` package (make deps) or set CHROMIUM");
  return found;
}

/** Serves ui/ (index.html, js/, style.css) with the app's CSP. */
export async function startServer() {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    const rel = url.pathname === "/" ? "index.html" : decodeURIComponent(url.pathname).replace(/^\/+/, "");
    const file = path.resolve(UI, rel);
    if (!file.startsWith(UI + path.sep) || rel.startsWith("test/")) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream", "Content-Security-Policy": CSP });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

/** Browser + server for one test file; close() stops both. */
export async function setup() {
  const { server, url } = await startServer();
  const browser = await puppeteer.launch({
    executablePath: findChromium(),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  return {
    url,
    browser,
    async close() {
      await browser.close();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Opens the app in a new page (1100x760 like the window). With `tauri: false`
 * the fake is not injected. Returns {page, problems}: problems collects
 * console errors, uncaught errors and CSP violations.
 */
export async function openApp(env, { tauri = true, before } = {}) {
  const page = await env.browser.newPage();
  await page.setViewport({ width: 1100, height: 760 });
  const problems = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  await page.evaluateOnNewDocument(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__csp.push(`${e.violatedDirective}: ${e.blockedURI} ${e.sourceFile ?? ""}:${e.lineNumber ?? ""}`);
    });
  });
  if (tauri) await page.evaluateOnNewDocument(installFakeTauri, fixtures);
  if (before) await page.evaluateOnNewDocument(before);
  await page.goto(env.url, { waitUntil: "load" });
  await page.waitForSelector("body[data-ready=true]", { timeout: 5000 });
  return { page, problems };
}

/** Fails when the page logged errors or violated the CSP. */
export async function assertClean(t, app) {
  const csp = await app.page.evaluate(() => window.__csp);
  const all = [...app.problems, ...csp.map((c) => `CSP violation: ${c}`)];
  if (all.length) throw new Error(`the page reported problems:\n${all.join("\n")}`);
}

export const sel = (id) => `[data-testid="${id}"]`;

/** Text of the first element with data-testid `id`. */
export function text(page, id) {
  return page.$eval(sel(id), (el) => el.textContent);
}

export async function click(page, id) {
  await page.waitForSelector(`${sel(id)}:not([disabled])`, { visible: true, timeout: 3000 });
  // Scrolled as the browser scrolls a focused element, above the sticky
  // wizard footer (the app's scroll-padding); puppeteer's own scrolling
  // ignores scroll-padding and would leave it under the footer.
  await page.$eval(sel(id), (e) => e.scrollIntoView({ block: "nearest" }));
  await page.click(sel(id));
}

/** Replaces an input's text (as a user would, firing input events). */
export async function typeInto(page, id, value) {
  await page.waitForSelector(sel(id), { visible: true });
  // Above the sticky wizard footer, as `click` scrolls.
  await page.$eval(sel(id), (e) => e.scrollIntoView({ block: "nearest" }));
  await page.click(sel(id), { clickCount: 3 });
  await page.keyboard.press("Backspace");
  if (value !== "") await page.type(sel(id), value);
}

/** Waits until the text of `id` matches `re`. */
export function waitText(page, id, re, timeout = 3000) {
  return page.waitForFunction(
    (s, src, flags) => {
      const el = document.querySelector(s);
      return el && new RegExp(src, flags).test(el.textContent);
    },
    { timeout },
    sel(id), re.source, re.flags,
  );
}

/** The fake's recorded calls of `cmd`. */
export function calls(page, cmd) {
  return page.evaluate((c) => window.__fake.calls.filter((x) => x.cmd === c), cmd);
}

/** Which wizard step container is visible. */
export function visibleStep(page) {
  return page.evaluate(() => [...document.querySelectorAll(".step")].filter((s) => !s.hidden).map((s) => s.dataset.step));
}

export async function shot(page, name) {
  if (process.env.UI_SHOTS === "0") return;
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

const WIZARD_STEPS = ["method", "training", "review"];

/** Walks the wizard with the defaults (sample 0, bundled model, first
 * method, first preset) until `step` ("method", "training" or "review")
 * is shown. */
export async function walkWizardTo(page, step) {
  await click(page, "dataset-sample-0");
  await waitText(page, "dataset-rows", /rows/);
  await click(page, "wizard-next");
  await click(page, "model-bundled");
  await waitText(page, "model-params", /parameters/);
  for (const s of WIZARD_STEPS) {
    await click(page, "wizard-next");
    await page.waitForSelector(sel(`step-${s}`), { visible: true });
    if (s === step) break;
  }
  if (step === "review") await waitText(page, "review-toml", /\[train\]/);
}

/** Walks the wizard with the defaults to the review step. */
export const walkWizardToReview = (page) => walkWizardTo(page, "review");
