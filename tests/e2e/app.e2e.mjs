// The real app, end to end: under Xvfb, driven through WebDriver
// (tauri-driver + WebKitWebDriver). Walks the wizard with the bundled model
// and dataset, starts the run, watches the loss chart gain points, stops
// the run, exports a PEFT adapter and finds it on disk. Screenshots of the
// whole screen (ImageMagick `import`: WebDriver's own screenshot call hangs
// with WebKitGTK) go to $E2E_OUT.
//
// Run through tests/e2e/run.sh, which starts Xvfb and the driver.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

import { WebDriver } from "./webdriver.mjs";

const OUT = process.env.E2E_OUT;
const APP = process.env.E2E_APP;
const DRIVER_URL = process.env.E2E_DRIVER_URL ?? "http://127.0.0.1:4444";

function screenshot(name) {
  const file = join(OUT, `${name}.png`);
  execFileSync("import", ["-window", "root", file], { timeout: 30_000 });
  return file;
}

/** Sum of the points of every polyline in the chart: grows with the steps. */
const CHART_POINTS = `
  const svg = document.querySelector('[data-testid=chart] svg');
  if (!svg) return 0;
  let n = 0;
  for (const p of svg.querySelectorAll('polyline')) {
    n += (p.getAttribute('points') || '').trim().split(/\\s+/).filter(Boolean).length;
  }
  return n;`;

test("wizard → run → live chart → stop → PEFT export on disk → chat", { timeout: 600_000 }, async () => {
  assert.ok(OUT && APP, "run through tests/e2e/run.sh");
  const wd = new WebDriver(DRIVER_URL);
  const launched = Date.now();
  await wd.start({ "tauri:options": { application: APP } });
  try {
    // 1. Dataset: the first bundled sample.
    await wd.waitFor("nav-wizard", { visible: true });
    console.log(`launch to a drawn window: ${Date.now() - launched} ms`);
    await wd.click("nav-wizard");
    await wd.click("dataset-sample-0");
    await wd.until("the dataset report", async () => /\d/.test(await wd.text("dataset-rows")));
    const usable = Date.now() - launched;
    console.log(`launch to a usable window (dataset report shown): ${usable} ms`);
    screenshot("1-dataset");
    await wd.click("wizard-next");

    // 2. Model: the bundled tiny model.
    await wd.click("model-bundled");
    await wd.until("the model summary", async () => /\d/.test(await wd.text("model-params")));
    screenshot("2-model");
    // Back to the dataset: the choice is kept, and with a model chosen the
    // report has token lengths and examples with the trained spans shaded.
    await wd.click("wizard-back");
    await wd.until("token lengths and examples", async () =>
      wd.script("return document.querySelectorAll('.histogram, .example mark.trained').length > 1;"));
    screenshot("1b-dataset-tokens");
    await wd.click("wizard-next");
    await wd.until("the model kept", async () => /\d/.test(await wd.text("model-params")));
    await wd.click("wizard-next");

    // 3. Method: KaSA (a method of its own kind from the engine's catalogue,
    // with two regularisers) at rank 8; the estimate follows the rank.
    await wd.click("method-kasa");
    await wd.until("KaSA's regulariser weights", async () => (await wd.script(
      "return document.querySelector('[data-testid=gamma-input]')?.value;")) === "0.001");
    await wd.type("rank-input", "4");
    await wd.until("the rank-4 estimate", async () => /37\.1\s*K/.test(await wd.text("trainable-params")));
    await wd.type("rank-input", "8");
    await wd.until("the rank-8 estimate", async () => /74\.2\s*K/.test(await wd.text("trainable-params")));
    screenshot("3-method");
    await wd.click("wizard-next");

    // 4. Training: the quickstart preset on the CPU.
    await wd.click("preset-quickstart");
    screenshot("4-training");
    await wd.click("wizard-next");

    // 5. Review and start.
    await wd.until("the TOML", async () => {
      const toml = await wd.text("review-toml");
      return toml.includes("rank = 8") && toml.includes('kind = "kasa"');
    });
    screenshot("5-review");
    // Count what reaches the page on `run-events` (payloads and the events
    // in them), to report the window's update rate.
    await wd.script(`
      const c = (window.__e2eRate = { payloads: 0, events: 0, first: 0, last: 0 });
      window.__TAURI__.event.listen('run-events', (e) => {
        const now = performance.now();
        if (!c.payloads) c.first = now;
        c.payloads++; c.events += e.payload.events.length; c.last = now;
      });`);
    await wd.click("start-run");

    // The dashboard: the chart gains points while the run goes on.
    await wd.until("the run to run", async () => (await wd.text("run-state")) === "running", 120_000);
    const first = await wd.until("a drawn chart", async () => wd.script(CHART_POINTS), 120_000);
    const later = await wd.until("more chart points", async () => {
      const n = await wd.script(CHART_POINTS);
      return n > first ? n : 0;
    }, 120_000);
    console.log(`chart points: ${first} → ${later}`);
    // Past the first evaluation (quickstart evaluates every 25 steps), so the
    // export below has a best checkpoint to take.
    await wd.until("step 30", async () => {
      const m = /Step (\d+)/.exec(await wd.text("run-progress"));
      return m && Number(m[1]) >= 30;
    }, 120_000);
    // KaSA's regularisers are reported beside the task loss.
    await wd.until("the method's loss terms", async () => /sv_reg.*orth_reg|orth_reg.*sv_reg/s.test(await wd.text("loss-terms")));
    screenshot("6-dashboard-running");
    await wd.click("stop-run");
    await wd.until("the run to end", async () => (await wd.text("run-state")) === "finished", 120_000);
    screenshot("7-dashboard-stopped");
    const rate = await wd.script("return window.__e2eRate;");
    const secs = (rate.last - rate.first) / 1000;
    console.log(
      `run-events: ${rate.payloads} payloads carrying ${rate.events} events in ${secs.toFixed(1)} s ` +
        `(${(rate.payloads / secs).toFixed(1)} updates/s for ${(rate.events / secs).toFixed(1)} events/s)`,
    );
    assert.ok(rate.payloads > 0 && rate.payloads < rate.events, "events arrive coalesced");

    // Export a PEFT adapter to the default place under the run folder.
    await wd.click("nav-export");
    await wd.waitFor("export-start", { visible: true });
    await wd.script(`
      const s = document.querySelector('[data-testid=export-format]');
      s.value = 'peft'; s.dispatchEvent(new Event('change', { bubbles: true }));`);
    const out = await wd.script(`return document.querySelector('[data-testid=export-out]').value;`);
    await wd.click("export-start");
    await wd.until("the export result", async () => (await wd.text("export-result")).length > 0, 120_000);
    screenshot("8-export");
    const adapter = join(out, "adapter_model.safetensors");
    assert.ok(existsSync(adapter), `no ${adapter}`);
    assert.ok(statSync(adapter).size > 1000);
    // KaSA goes out as a plain LoRA of twice its rank on the original base.
    const peft = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"));
    assert.equal(peft.r, 16, JSON.stringify(peft));
    assert.equal(await wd.find("export-error"), null);

    // Chat: the base model and the run's best checkpoint answer side by
    // side, streamed token by token.
    await wd.script(`
      window.__e2eTokens = {};
      window.__TAURI__.event.listen('chat-token', (e) => {
        window.__e2eTokens[e.payload.id] = (window.__e2eTokens[e.payload.id] || 0) + 1;
      });`);
    await wd.click("nav-chat");
    await wd.type("chat-prompt", "What is the capital of Sweden?");
    await wd.click("chat-send");
    const status = `return ['base', 'tuned'].map((s) =>
      document.querySelector('[data-testid=chat-' + s + ']')?.dataset.status);`;
    const done = await wd.until("both answers", async () => {
      const st = await wd.script(status);
      return st.every((x) => x === "done" || x === "error") ? st : null;
    }, 120_000);
    screenshot("9-chat");
    assert.deepEqual(done, ["done", "done"], await wd.text("chat-tuned"));
    const tokens = await wd.script("return window.__e2eTokens;");
    console.log(`chat-token events per answer: ${JSON.stringify(tokens)}`);
    assert.equal(Object.keys(tokens).length, 2, "both answers streamed");
  } catch (e) {
    screenshot("failure");
    throw e;
  } finally {
    await wd.quit();
  }
});
