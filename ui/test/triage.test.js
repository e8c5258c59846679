// Triage: the training step's toggle and learning-rate list (validated), the
// review's Start triage (start_triage with the grid and the config), and the
// Triage view driven by a replay of a real recorded triage (fixtures/app.json
// triage.payloads, cut from `tunesmith triage --json`): one row per
// candidate, the ranking, the kept one, the summary with the steps saved,
// Open in dashboard; an error payload shows prominently.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setup, openApp, assertClean, click, text, waitText, calls, sel, shot, fixtures, typeInto, visibleStep, walkWizardTo } from "./harness.js";

let env;
before(async () => { env = await setup(); });
after(async () => { await env?.close(); });

const report = fixtures.triage.payloads.at(-1).done;
const message = (page) => page.$eval("#step-message", (e) => e.textContent);

const walkToTraining = (page) => walkWizardTo(page, "training");

/** Turns triage on (default learning rates) and goes on to Review. */
async function toReviewWithTriage(page, lrs) {
  await walkToTraining(page);
  await click(page, "triage-toggle");
  if (lrs != null) await typeInto(page, "triage-lrs", lrs);
  await click(page, "wizard-next");
  await page.waitForSelector(sel("step-review"), { visible: true });
  await waitText(page, "review-toml", /\[train\]/);
}

test("triage: learning rates validated, start_triage called, the view follows a real triage", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await walkToTraining(page);

  // Off by default; the list is the learning rate times 0.3, 1 and 3.
  assert.equal(await page.$eval(sel("triage-toggle"), (e) => e.checked), false);
  assert.equal(await page.$eval(sel("triage-lrs"), (e) => e.disabled), true);
  await click(page, "triage-toggle");
  assert.equal(await page.$eval(sel("triage-lrs"), (e) => e.value), "9e-4, 3e-3, 9e-3");
  assert.match(await page.$eval(sel("step-training"), (e) => e.textContent), /early window \(10% of the planned steps\)/);

  // One value, or something that is not a number, blocks Next.
  await typeInto(page, "triage-lrs", "0.01");
  await click(page, "wizard-next");
  assert.deepEqual(await visibleStep(page), ["training"]);
  assert.match(await message(page), /at least two learning rates/);
  await typeInto(page, "triage-lrs", "0.01, abc");
  await click(page, "wizard-next");
  assert.deepEqual(await visibleStep(page), ["training"]);
  assert.match(await message(page), /must be a number \("abc"\)/);
  await typeInto(page, "triage-lrs", "abc");
  await click(page, "wizard-next");
  assert.match(await message(page), /must be a number/);
  await typeInto(page, "triage-lrs", "1e-3, 0");
  await click(page, "wizard-next");
  assert.match(await message(page), /greater than 0/);

  await typeInto(page, "triage-lrs", "1e-3, 3e-3,1e-2");
  await click(page, "wizard-next");
  await page.waitForSelector(sel("step-review"), { visible: true });
  await waitText(page, "review-toml", /\[train\]/);
  assert.match(await text(page, "review-triage"), /Triage over learning rates: 1e-3, 3e-3, 1e-2/);
  assert.equal(await text(page, "start-run"), "Start triage");

  await click(page, "start-run");
  await page.waitForSelector(sel("triage-table"), { visible: true });
  assert.equal((await calls(page, "start_run")).length, 0);
  const [call] = await calls(page, "start_triage");
  assert.deepEqual(call.args.grid, ["lr=1e-3,3e-3,1e-2"]);
  assert.equal(call.args.run_all, false);
  assert.equal(call.args.config.train.learning_rate, 0.003);
  assert.equal(call.args.config.model.path, fixtures.bundled.model.path);
  assert.equal(await page.$eval(sel("nav-triage"), (e) => e.getAttribute("aria-current")), "page");

  // The replay: the summary comes with the last payload.
  await page.waitForSelector(sel("triage-summary"), { visible: true, timeout: 5000 });
  const rows = await page.$$eval(sel("triage-row"), (rs) => rs.map((r) => ({
    dir: r.dataset.runDir,
    cells: [...r.querySelectorAll("td")].map((td) => td.textContent),
  })));
  assert.deepEqual(rows.map((r) => r.dir), report.candidates.map((c) => c.run_dir));
  const kept = report.candidates[report.kept];
  for (const [i, c] of report.candidates.entries()) {
    const [name, state, step, , , rank, verdict] = rows[i].cells;
    assert.equal(name, c.name);
    assert.equal(state, c.kept ? "finished" : "stopped after early window");
    assert.equal(step, `${c.steps} / ${c.total_steps}`);
    assert.equal(rank, String(c.rank + 1));
    assert.equal(verdict, c.kept ? "kept" : c.likely_worse ? "likely worse" : "not kept");
  }
  assert.equal(await page.$$eval(`${sel("triage-row")}.kept`, (rs) => rs.map((r) => r.dataset.runDir).join()), kept.run_dir);
  const ranked = fixtures.triage.payloads.flatMap((p) => p.events).find((e) => e.triage === "ranked").order;
  assert.match(await text(page, "triage-ranked"), new RegExp(ranked.join(", ")));
  const summary = await text(page, "triage-summary");
  assert.match(summary, new RegExp(`Kept ${kept.name}`));
  const saved = report.steps_all_to_end - report.steps_run;
  assert.match(summary, new RegExp(`${report.steps_run} steps run instead of ${report.steps_all_to_end}.*${saved} steps saved`));

  // The overlay of the candidates: throttled, never two at once, all run folders.
  await page.waitForSelector(`${sel("triage-chart")} svg`, { timeout: 3000 });
  await page.waitForFunction((n) => window.__fake.calls.filter((c) => c.cmd === "overlay_chart").at(-1)?.args.run_dirs.length === n,
    { timeout: 3000 }, report.candidates.length);
  assert.equal(await page.evaluate(() => window.__fake.maxInFlight.overlay_chart), 1);
  const chartCalls = await calls(page, "overlay_chart");
  for (let i = 1; i < chartCalls.length; i += 1) {
    assert.ok(chartCalls[i].t - chartCalls[i - 1].t >= 480, `overlay calls ${i - 1} and ${i} are ${chartCalls[i].t - chartCalls[i - 1].t} ms apart`);
  }
  assert.equal(await page.$(sel("triage-error")).then((e) => e.evaluate((x) => x.hidden)), true);
  await shot(page, "10-triage");

  // Open in dashboard: the kept run becomes the current one.
  await click(page, "triage-open-kept");
  await page.waitForSelector(sel("run-state"), { visible: true });
  assert.equal(await page.$eval("#dash-run-name", (e) => e.textContent), kept.run_dir.split("/").pop());
  await page.waitForFunction((d) => window.__fake.calls.some((c) => c.cmd === "run_chart" && c.args.run_dir === d), { timeout: 3000 }, kept.run_dir);
  await assertClean(t, app);
});

test("triage: a rejected start_triage shows inline; an error payload shows prominently", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await toReviewWithTriage(page);
  assert.match(await text(page, "review-triage"), /9e-4, 3e-3, 9e-3/);

  await page.evaluate(() => { window.__fake.fail.start_triage = "grid: lr needs at least two values"; });
  await click(page, "start-run");
  await waitText(page, "start-error", /lr needs at least two values/);
  assert.deepEqual(await visibleStep(page), ["review"]);

  const dir = fixtures.triage.dir;
  const first = fixtures.triage.payloads[0];
  await page.evaluate((p, d) => {
    delete window.__fake.fail.start_triage;
    window.__fake.triagePayloads = [p, { dir: d, events: [], done: null, error: "candidate lr-1e-3: out of memory" }];
  }, first, dir);
  await click(page, "start-run");
  await page.waitForSelector(sel("triage-error"), { visible: true, timeout: 3000 });
  assert.match(await text(page, "triage-error"), /Triage failed.*out of memory/);
  assert.ok((await page.$$(sel("triage-row"))).length >= 1);
  assert.equal(await page.$(sel("triage-summary")), null);
  assert.deepEqual((await calls(page, "start_triage")).at(-1).args.grid, ["lr=9e-4,3e-3,9e-3"]);
  await shot(page, "11-triage-error");
  await assertClean(t, app);
});
