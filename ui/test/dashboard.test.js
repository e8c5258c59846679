// Dashboard: a replay of real runs' recorded events (fixtures/app.json
// replays, cut into run-events payloads) drives state, progress, advice,
// markers and the outcome; chart requests are throttled and never overlap;
// the controls send control_run.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setup, openApp, assertClean, click, text, waitText, calls, sel, shot, fixtures, walkWizardToReview } from "./harness.js";

let env;
before(async () => { env = await setup(); });
after(async () => { await env?.close(); });

async function startRun(page, runDir) {
  await page.evaluate((d) => { window.__fake.nextRunDir = d; }, runDir);
  await walkWizardToReview(page);
  await click(page, "start-run");
  await page.waitForSelector(sel("run-state"), { visible: true });
}

/** Emits payloads[from, to) `gap` ms apart. */
function replay(page, payloads, gap = 40) {
  return page.evaluate(async (ps, g) => {
    for (const p of ps) {
      window.__fake.emit("run-events", p);
      await new Promise((r) => setTimeout(r, g));
    }
  }, payloads, gap);
}

test("a real run's events: progress, state, advice, markers, finished", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  const payloads = fixtures.replays["too-hot"];
  const runDir = payloads[0].run_dir;
  await startRun(page, runDir);
  assert.equal(await text(page, "run-state"), "starting");

  await replay(page, payloads.slice(0, 8));
  assert.equal(await text(page, "run-state"), "running");
  const mid = payloads[7].progress;
  assert.match(await text(page, "run-progress"), new RegExp(`Step ${mid.step} / ${mid.total_steps}`));
  await click(page, "pause-run");
  await page.waitForFunction(() => window.__fake.calls.some((c) => c.cmd === "control_run"));
  assert.deepEqual((await calls(page, "control_run"))[0].args, { run_dir: runDir, action: "pause" });

  await replay(page, payloads.slice(8));
  await waitText(page, "run-state", /^finished$/);
  assert.match(await text(page, "run-progress"), /Step 172 \/ 172/);
  assert.match(await text(page, "run-finished"), /Finished: completed/);
  assert.match(await text(page, "run-finished"), /6\.386 at step 50/);
  // The last chart request sees the whole run: 3 advice markers + the best checkpoint.
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="chart-marker"]').length === 4, { timeout: 3000 });
  const markers = await page.$$eval(sel("chart-marker"), (ms) => ms.map((m) => ({
    kind: m.dataset.kind, severity: m.dataset.severity, title: m.title, left: m.style.left, top: m.style.top,
  })));
  assert.equal(markers.filter((m) => m.kind === "advice").length, 3);
  assert.ok(markers.some((m) => m.kind === "best" && /step 50/.test(m.title)));
  assert.ok(markers.every((m) => /px$/.test(m.left) && /px$/.test(m.top)), "markers are positioned");
  assert.ok(await page.$(`${sel("chart")} svg`), "the svg is in the chart container");
  const adviceItems = await page.$$eval(`${sel("advice-list")} li.advice`, (ls) => ls.map((l) => l.className));
  assert.equal(adviceItems.length, 3);
  assert.ok(adviceItems.some((c) => /sev-warning/.test(c)) && adviceItems.some((c) => /sev-info/.test(c)));
  // Controls are off once the run has finished.
  assert.equal(await page.$eval(sel("pause-run"), (b) => b.disabled), true);
  assert.equal(await page.$eval(sel("stop-run"), (b) => b.disabled), true);

  // A marker's text on click.
  await page.click(`${sel("chart-marker")}[data-kind=advice]`);
  const pop = await page.$eval(".marker-popover", (p) => ({ hidden: p.hidden, text: p.textContent }));
  assert.equal(pop.hidden, false);
  assert.match(pop.text, /gradient norm/);
  await shot(page, "6-dashboard");

  // Chart requests: never two at once, at most about two a second.
  const chartCalls = await calls(page, "run_chart");
  assert.equal(await page.evaluate(() => window.__fake.maxInFlight.run_chart), 1);
  for (let i = 1; i < chartCalls.length; i += 1) {
    assert.ok(chartCalls[i].t - chartCalls[i - 1].t >= 480, `chart calls ${i - 1} and ${i} are ${chartCalls[i].t - chartCalls[i - 1].t} ms apart`);
  }
  assert.ok(chartCalls.every((c) => c.args.run_dir === runDir && c.args.width > 0 && c.args.height > 0));
  await assertClean(t, app);
});

test("a run the advisor stops: critical advice and the stop reason shown", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  const payloads = fixtures.replays.diverged;
  await startRun(page, payloads[0].run_dir);
  await replay(page, payloads, 20);
  await waitText(page, "run-state", /^finished$/);
  assert.match(await text(page, "run-finished"), /Stopped: stopped by the advisor \(Divergence\)/);
  const advice = await page.$eval(`${sel("advice-list")} li.advice`, (l) => ({ cls: l.className, text: l.textContent }));
  assert.match(advice.cls, /sev-critical/);
  assert.match(advice.text, /This rule stops the run/);
  await assertClean(t, app);
});

test("a control_run rejection is shown next to the controls", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  const payloads = fixtures.replays.quickstart;
  await startRun(page, payloads[0].run_dir);
  await replay(page, payloads.slice(0, 4));
  await page.evaluate(() => { window.__fake.fail.control_run = "that run is not running in this window"; });
  await click(page, "checkpoint-run");
  await page.waitForFunction(() => /not running in this window/.test(document.querySelector(".control-error").textContent));
  await assertClean(t, app);
});

test("a GPU run's first step shows the kernel preparation, and the first step ends it", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  // The quickstart's recording, as a wgpu run reports it: `preparing`
  // right after `started` (src/train/trainer.rs).
  const payloads = structuredClone(fixtures.replays.quickstart);
  const message = "preparing kernels (first run only: compiled and tuned once, then cached for later runs)";
  payloads[0].events.push({ event: "preparing", step: 0, message });
  await startRun(page, payloads[0].run_dir);
  await replay(page, payloads.slice(0, 1));
  await page.waitForSelector(sel("preparing"), { visible: true });
  assert.equal(await text(page, "preparing"), message);
  const firstStep = payloads.findIndex((p) => p.events.some((e) => e.event === "step"));
  await replay(page, payloads.slice(1, firstStep + 1));
  await page.waitForFunction((s) => !document.querySelector(s), {}, sel("preparing"));
  await assertClean(t, app);
});

test("an AdaLoRA run's reallocations: the ranks per layer as they move", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  // A real AdaLoRA run of the quickstart (record-fixtures.sh): `ranks`
  // events after each reallocation.
  const payloads = fixtures.replays.adalora;
  const ranksOf = (ps) => ps.flatMap((p) => p.events).filter((e) => e.event === "ranks");
  assert.ok(ranksOf(payloads).length >= 2, "the recording reallocates more than once");
  await startRun(page, payloads[0].run_dir);
  const first = payloads.findIndex((p) => p.events.some((e) => e.event === "ranks"));
  assert.equal(await page.$(sel("ranks-table")), null, "no table before the first reallocation");
  const cells = () => page.$$eval(`${sel("ranks-table")} td.rank-cell`, (tds) => tds.map((td) => td.title));
  const want = (ev) => Object.entries(ev.ranks).map(([name, r]) => {
    const [, layer, leaf] = /layers\.(\d+)\.[a-z_]+\.([a-z_]+)$/.exec(name);
    return `layer ${layer} ${leaf}: rank ${r}`;
  }).sort();
  for (const upto of [first + 1, payloads.length]) {
    await replay(page, payloads.slice(upto === first + 1 ? 0 : first + 1, upto));
    const last = ranksOf(payloads.slice(0, upto)).at(-1);
    await page.waitForFunction((s, step) => document.querySelector(s)?.textContent.includes(`After step ${step}:`),
      {}, sel("ranks-summary"), last.step);
    assert.deepEqual((await cells()).sort(), want(last));
    const kept = Object.values(last.ranks).reduce((a, b) => a + b, 0);
    assert.match(await text(page, "ranks-summary"), new RegExp(`${kept} ranks kept of a budget of ${last.budget}`));
  }
  // The orthogonality regulariser beside the task loss, as the last step reported it.
  const lastStep = payloads.flatMap((p) => p.events).findLast((e) => e.event === "step");
  assert.equal(await text(page, "loss-terms"), `orth_reg ${lastStep.terms.orth_reg.toPrecision(4)}`);
  await shot(page, "6-dashboard-adalora");
  await assertClean(t, app);
});
