// Runs, Export, Chat and errors: overlay selection, resume of an interrupted
// run, the export report and the engine's export error, side-by-side chat
// streaming filtered by id, and the error banner.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setup, openApp, assertClean, click, text, waitText, calls, sel, shot, fixtures } from "./harness.js";

let env;
before(async () => { env = await setup(); });
after(async () => { await env?.close(); });

const runByName = (suffix) => fixtures.runs.find((r) => r.name.endsWith(suffix));

test("runs: table, chart of one run, overlay of several, resume of an interrupted one", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await click(page, "nav-runs");
  await page.waitForSelector(sel("runs-row"));
  const dirs = await page.$$eval(sel("runs-row"), (rs) => rs.map((r) => r.dataset.runDir));
  assert.deepEqual(dirs, fixtures.runs.map((r) => r.dir));
  assert.equal(await page.$eval(sel("runs-overlay"), (b) => b.disabled), true);
  assert.equal(await page.$eval(sel("runs-resume"), (b) => b.disabled), true);

  // One run: its chart and events summary.
  const hot = runByName("too-hot");
  await page.click(`${sel("runs-row")}[data-run-dir="${hot.dir}"]`);
  await page.waitForSelector(`${sel("runs-chart")} svg`);
  await waitText(page, "runs-events", /completed at step 172/);
  assert.equal((await calls(page, "run_chart")).at(-1).args.run_dir, hot.dir);
  assert.equal(await page.$$eval(`${sel("runs-chart")} ${sel("chart-marker")}`, (m) => m.length), 4);
  assert.equal(await page.$eval(sel("runs-resume"), (b) => b.disabled), true, "a completed run cannot resume");

  // Overlay two ticked runs.
  const qs = runByName("quickstart");
  for (const r of [qs, hot]) await page.click(`${sel("runs-row")}[data-run-dir="${r.dir}"] input[type=checkbox]`);
  await click(page, "runs-overlay");
  await page.waitForFunction(() => window.__fake.calls.some((c) => c.cmd === "overlay_chart"));
  const [ov] = await calls(page, "overlay_chart");
  assert.deepEqual(new Set(ov.args.run_dirs), new Set([qs.dir, hot.dir]));
  assert.ok(ov.args.width > 0 && ov.args.height > 0);
  await page.waitForSelector(`${sel("runs-chart")} svg polyline:nth-of-type(2)`);
  await shot(page, "7-runs");

  // Resume the interrupted run.
  const int = runByName("interrupted");
  assert.equal(int.status, "running or interrupted");
  await page.click(`${sel("runs-row")}[data-run-dir="${int.dir}"]`);
  await click(page, "runs-resume");
  await page.waitForSelector(sel("run-state"), { visible: true });
  assert.deepEqual((await calls(page, "resume_run"))[0].args, { run_dir: int.dir });
  assert.equal(await page.$eval(sel("nav-dashboard"), (e) => e.getAttribute("aria-current")), "page");
  await assertClean(t, app);
});

test("export: default output, report, then the engine's error; Choose… sets the output", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await click(page, "nav-export");
  const qs = runByName("quickstart");
  await page.waitForSelector(`${sel("export-run-select")} option[value="${qs.dir}"]`);
  await page.select(sel("export-run-select"), qs.dir);
  assert.equal(await page.$eval(sel("export-out"), (e) => e.value), `${qs.dir}/export/peft`);
  await page.select(sel("export-format"), "gguf");
  assert.equal(await page.$eval(sel("export-out"), (e) => e.value), `${qs.dir}/export/gguf`);
  await page.select(sel("export-format"), "peft");
  await page.select(sel("export-checkpoint"), "last");

  await click(page, "export-start");
  await page.waitForSelector(sel("export-result"));
  const report = fixtures.export.report;
  const shown = await text(page, "export-result");
  assert.match(shown, /adapter_model\.safetensors/);
  assert.match(shown, /adapter_model\.safetensors[\d.]+ KiB/);
  assert.ok(shown.includes(report.chosen_because));
  assert.ok(shown.includes(report.path));
  assert.deepEqual((await calls(page, "export_run"))[0].args, {
    run_dir: qs.dir, format: "peft", out: `${qs.dir}/export/peft`, checkpoint: "last",
  });
  await shot(page, "8-export");

  // The same output again: the engine refuses (recorded message), shown inline.
  await click(page, "export-start");
  await waitText(page, "export-error", /already exists/);
  assert.equal(await page.$(sel("export-result")), null);

  await page.evaluate(() => { window.__fake.pick.export = "/home/me/exports/quickstart-adapter"; });
  await click(page, "export-choose");
  await page.waitForFunction(() => document.querySelector('[data-testid="export-out"]').value === "/home/me/exports/quickstart-adapter");
  assert.equal((await calls(page, "pick_path")).at(-1).args.kind, "export");
  await assertClean(t, app);
});

test("chat: base and tuned stream side by side, tokens filtered by id", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await click(page, "nav-chat");
  await page.waitForSelector(`${sel("chat-run-select")} option[value="${fixtures.runs[0].dir}"]`);
  const qs = runByName("quickstart");
  await page.select(sel("chat-run-select"), qs.dir);
  await page.type(sel("chat-prompt"), fixtures.chat.prompt);
  await click(page, "chat-send");
  await page.waitForFunction(() => document.querySelector('[data-testid="chat-tuned"]').dataset.status === "done"
    && document.querySelector('[data-testid="chat-base"]').dataset.status === "done", { timeout: 5000 });
  const tuned = await page.$eval(`${sel("chat-tuned")} .chat-text`, (e) => e.textContent);
  const base = await page.$eval(`${sel("chat-base")} .chat-text`, (e) => e.textContent);
  assert.equal(tuned, fixtures.chat.tuned);
  assert.equal(base, fixtures.chat.base);
  assert.ok(!tuned.includes("NOISE"));
  const chats = await calls(page, "chat");
  const b = chats.find((c) => !c.args.run_dir);
  const tu = chats.find((c) => c.args.run_dir);
  assert.equal(tu.args.run_dir, qs.dir);
  assert.notEqual(b.args.id, tu.args.id);
  assert.equal(b.args.model_path, fixtures.bundled.model.path);
  assert.equal(b.args.prompt, fixtures.chat.prompt);
  await shot(page, "9-chat");
  await assertClean(t, app);
});

test("errors: a rejected command shows in the banner, which can be dismissed", async (t) => {
  const app = await openApp(env, {
    before: () => { window.__fake.fail.backends = "could not probe the GPU: driver error"; },
  });
  const { page } = app;
  await page.waitForSelector(`${sel("error-banner")}:not([hidden])`);
  assert.match(await text(page, "error-banner"), /backends: could not probe the GPU: driver error/);
  await page.click(`${sel("error-banner")} .error-dismiss`);
  assert.equal(await page.$eval(sel("error-banner"), (e) => e.hidden), true);
  // A rejected list_runs shows inline in the Runs view.
  await page.evaluate(() => { window.__fake.fail.list_runs = "cannot read the runs folder"; });
  await click(page, "nav-runs");
  await waitText(page, "runs-error", /cannot read the runs folder/);
  await assertClean(t, app);
});

test("outside the app: the banner says so", async (t) => {
  const app = await openApp(env, { tauri: false });
  const { page } = app;
  assert.match(await text(page, "error-banner"), /Not running inside the Tunesmith app/);
  assert.equal(await page.$eval(sel("error-banner"), (e) => e.hidden), false);
  await assertClean(t, app);
});
