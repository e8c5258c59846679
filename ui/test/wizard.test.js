// Wizard: navigation, state kept on Back, validation blocking Next, the
// dataset/model reports, and start_run receiving the edited config.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  setup, openApp, assertClean, click, typeInto, text, waitText, calls, visibleStep, shot, sel, fixtures,
} from "./harness.js";

let env;
before(async () => { env = await setup(); });
after(async () => { await env?.close(); });

test("wizard keeps state on Back, blocks Next until valid, and starts the edited config", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  assert.deepEqual(await visibleStep(page), ["dataset"]);

  // Next without a dataset is blocked with a message on the step.
  await click(page, "wizard-next");
  assert.deepEqual(await visibleStep(page), ["dataset"]);
  assert.match(await page.$eval("#step-message", (e) => e.textContent), /Choose a dataset/);

  await click(page, "dataset-sample-0");
  await waitText(page, "dataset-rows", /381 rows/);
  assert.equal(await page.$eval("#step-message", (e) => e.textContent), "");
  await shot(page, "1-wizard-dataset");
  await click(page, "wizard-next");
  assert.deepEqual(await visibleStep(page), ["model"]);

  // Blocked until a model is chosen.
  await click(page, "wizard-next");
  assert.match(await page.$eval("#step-message", (e) => e.textContent), /Choose a model/);
  await click(page, "model-bundled");
  await waitText(page, "model-params", /988 K parameters/);
  // The dataset is re-inspected with the model: histogram and examples show.
  await page.waitForSelector(`${sel("step-model")} .histogram svg rect`);
  const inspects = await calls(page, "inspect_dataset");
  assert.equal(inspects.at(-1).args.model_path, fixtures.bundled.model.path);
  assert.equal(inspects.at(-1).args.path, fixtures.bundled.datasets[0].path);
  await shot(page, "2-wizard-model");

  // Back: the dataset step still shows the choice, now with the token view.
  await click(page, "wizard-back");
  assert.deepEqual(await visibleStep(page), ["dataset"]);
  assert.match(await text(page, "dataset-rows"), /381 rows/);
  assert.equal(await page.$eval(sel("dataset-sample-0"), (e) => e.getAttribute("aria-pressed")), "true");
  assert.ok(await page.$(`${sel("step-dataset")} mark.trained`), "trained spans are shaded");
  await click(page, "wizard-next");
  assert.match(await text(page, "model-params"), /988 K/);
  await click(page, "wizard-next");

  // Method: rank 16 → 8 updates the estimate.
  assert.deepEqual(await visibleStep(page), ["method"]);
  assert.equal(await page.$eval(sel("rank-input"), (e) => e.value), "16");
  await waitText(page, "trainable-params", /148 K/);
  await typeInto(page, "rank-input", "8");
  await waitText(page, "trainable-params", /74 K/);
  assert.match(await text(page, "memory-estimate"), /MiB/);
  // An invalid rank blocks Next.
  await typeInto(page, "rank-input", "0");
  await click(page, "wizard-next");
  assert.deepEqual(await visibleStep(page), ["method"]);
  assert.match(await page.$eval("#step-message", (e) => e.textContent), /Rank must be 1 or more/);
  await typeInto(page, "rank-input", "8");
  // Next sits at the foot of the long method step; the training step opens
  // at its top, its presets in sight, not scrolled as far as the method was.
  await page.$eval(".main", (e) => e.scrollTo({ top: e.scrollHeight }));
  assert.ok(await page.$eval(".main", (e) => e.scrollTop) > 0, "the method step scrolls");
  await click(page, "wizard-next");
  assert.deepEqual(await visibleStep(page), ["training"]);
  assert.equal(await page.$eval(".main", (e) => e.scrollTop), 0);
  const preset = await page.$eval(sel("preset-quickstart"), (e) => e.getBoundingClientRect().top);
  assert.ok(preset >= 0 && preset < 760, `the presets are in sight (top ${preset})`);

  // Training: a preset fills values; bad values block Next.
  assert.equal(await page.$eval(sel("lr-input"), (e) => e.value), "0.003");
  await click(page, "preset-low-memory");
  assert.equal(await page.$eval(sel("lr-input"), (e) => e.value), "0.0002");
  await click(page, "preset-quickstart");
  await typeInto(page, "lr-input", "abc");
  await click(page, "wizard-next");
  assert.deepEqual(await visibleStep(page), ["training"]);
  assert.match(await page.$eval("#step-message", (e) => e.textContent), /Learning rate must be a number/);
  await typeInto(page, "lr-input", "-1");
  await click(page, "wizard-next");
  assert.match(await page.$eval("#step-message", (e) => e.textContent), /Learning rate must be greater than 0/);
  await typeInto(page, "lr-input", "1e-3");
  await typeInto(page, "epochs-input", "2");
  // Unavailable backends are disabled, with the reason.
  const options = await page.$$eval(`${sel("backend-select")} option`, (os) => os.map((o) => [o.value, o.disabled, o.textContent]));
  assert.deepEqual(options.find((o) => o[0] === "wgpu").slice(0, 2), ["wgpu", true]);
  assert.match(options.find((o) => o[0] === "wgpu")[2], /no Vulkan device found/);
  await page.select(sel("backend-select"), "cpu");
  await shot(page, "4-wizard-training");
  await click(page, "wizard-next");

  // Review: the TOML reflects the edits.
  assert.deepEqual(await visibleStep(page), ["review"]);
  await waitText(page, "review-toml", /rank = 8/);
  assert.match(await text(page, "review-toml"), /learning_rate = 0\.001/);
  assert.doesNotMatch(await text(page, "step-review"), /\bnull\b|\bundefined\b/);
  await shot(page, "5-wizard-review");

  // Back twice and forward again: everything is still there.
  await click(page, "wizard-back");
  assert.equal(await page.$eval(sel("lr-input"), (e) => e.value), "1e-3");
  assert.equal(await page.$eval(sel("backend-select"), (e) => e.value), "cpu");
  await click(page, "wizard-back");
  assert.equal(await page.$eval(sel("rank-input"), (e) => e.value), "8");
  await shot(page, "3-wizard-method");
  await click(page, "wizard-next");
  await click(page, "wizard-next");
  await waitText(page, "review-toml", /rank = 8/);

  await click(page, "start-run");
  await page.waitForSelector(sel("run-state"), { visible: true });
  const [start] = await calls(page, "start_run");
  assert.equal(start.args.config.method.rank, 8);
  assert.equal(start.args.config.method.kind, "lora");
  assert.equal(start.args.config.train.learning_rate, 0.001);
  assert.equal(start.args.config.train.epochs, 2);
  assert.equal(start.args.config.model.backend, "cpu");
  assert.equal(start.args.config.model.path, fixtures.bundled.model.path);
  assert.equal(start.args.config.data.train, fixtures.bundled.datasets[0].path);
  assert.equal(await page.$eval(sel("nav-dashboard"), (e) => e.getAttribute("aria-current")), "page");
  await assertClean(t, app);
});

test("dataset: format change re-inspects; a chosen file shows bad rows with line numbers", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  const bad = "/tmp/ui-rec/mixed-with-bad-rows.jsonl";
  await page.evaluate((p) => { window.__fake.pick.dataset = p; }, bad);
  await click(page, "dataset-choose");
  await waitText(page, "dataset-rows", /40 rows/);
  const badText = await page.$eval(`${sel("step-dataset")} .bad-rows`, (e) => e.textContent);
  assert.match(badText, /2 bad rows/);
  assert.match(badText, /line 21.*invalid JSON/s);
  assert.match(badText, /line 32.*out of order/s);

  await click(page, "dataset-sample-1");
  await waitText(page, "dataset-rows", /150 rows/);
  await page.select(sel("dataset-format"), "alpaca");
  await page.waitForFunction(() => window.__fake.calls.some((c) => c.cmd === "inspect_dataset" && c.args.format === "alpaca"));
  // The re-inspection's report is shown (the recorded engine answer for format=alpaca).
  const expected = fixtures.data["chat-sample.alpaca"]?.rows ?? null;
  if (expected != null) await waitText(page, "dataset-rows", new RegExp(`${expected} rows`));
  assert.equal(await page.$eval(sel("dataset-format"), (e) => e.value), "alpaca");
  await assertClean(t, app);
});

test("model: models found on this machine are listed; one is used, one says why it cannot train", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await click(page, "dataset-sample-0");
  await waitText(page, "dataset-rows", /381 rows/);
  await click(page, "wizard-next");
  await page.waitForSelector(sel("found-models"));
  const listed = fixtures.models.models;
  const rows = await page.$$eval(`${sel("found-models")} tbody tr`, (trs) => trs.map((tr) => tr.textContent));
  assert.equal(rows.length, listed.length);
  // Each row shows the engine's name, architecture and type.
  listed.forEach((m, i) => {
    assert.ok(rows[i].includes(m.name), `${m.name} in row ${i}`);
    if (m.architecture) assert.ok(rows[i].includes(m.architecture));
    if (m.dtype) assert.ok(rows[i].includes(m.dtype));
  });
  const untrainable = listed.findIndex((m) => !m.trainable);
  assert.ok(untrainable >= 0, "the fixture has a model that cannot be trained");
  assert.equal(await page.$(sel(`found-use-${untrainable}`)), null, "no Use button for it");
  assert.match(await text(page, `found-why-${untrainable}`), /Cannot train: .*pickle/);

  const bundled = listed.findIndex((m) => m.path === fixtures.bundled.model.path);
  assert.ok(bundled >= 0, "the bundled model is among those found");
  await click(page, `found-use-${bundled}`);
  await waitText(page, "model-params", /988 K parameters/);
  assert.equal(await page.$eval(sel(`found-use-${bundled}`), (e) => e.getAttribute("aria-pressed")), "true");
  const inspects = await calls(page, "inspect_model");
  assert.equal(inspects.at(-1).args.path, fixtures.bundled.model.path);
  await click(page, "wizard-next");
  assert.deepEqual(await visibleStep(page), ["method"]);
  assert.equal((await calls(page, "list_models")).length, 1, "looked up once");
  await assertClean(t, app);
});
