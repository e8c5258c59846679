// Method step: the estimate is debounced while typing, a stale (slower) answer
// never overwrites a newer one, and an engine rejection shows next to the
// controls.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setup, openApp, assertClean, click, typeInto, text, waitText, calls, sel, walkWizardTo } from "./harness.js";

let env;
before(async () => { env = await setup(); });
after(async () => { await env?.close(); });

async function toMethodStep(page) {
  await walkWizardTo(page, "method");
  await waitText(page, "trainable-params", /148 K/);
}

const estimateCount = (page) => page.evaluate(() => window.__fake.calls.filter((c) => c.cmd === "estimate").length);

test("typing quickly sends one estimate (debounced)", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await toMethodStep(page);
  const n0 = await estimateCount(page);
  // Five keystrokes 20 ms apart: within the debounce window.
  await page.$eval(sel("rank-input"), (e) => e.scrollIntoView({ block: "nearest" }));
  await page.click(sel("rank-input"), { clickCount: 3 });
  await page.type(sel("rank-input"), "32", { delay: 20 });
  await page.keyboard.press("Backspace", { delay: 20 });
  await page.keyboard.press("Backspace", { delay: 20 });
  await page.type(sel("rank-input"), "32", { delay: 20 });
  await waitText(page, "trainable-params", /296 K/);
  await new Promise((r) => setTimeout(r, 300));
  const sent = (await calls(page, "estimate")).slice(n0);
  assert.equal(sent.length, 1, `one estimate after the burst, got ${sent.length}`);
  assert.equal(sent[0].args.config.method.rank, 32);
  assert.ok(sent[0].args.config.model.path && sent[0].args.config.data.train, "the estimate gets the whole config");
  await assertClean(t, app);
});

test("a slow stale estimate does not overwrite a newer one", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await toMethodStep(page);
  // Rank 4 answers after 700 ms, rank 8 after 20 ms.
  await page.evaluate(() => { window.__fake.delay.estimate = (a) => (a.config.method.rank === 4 ? 700 : 20); });
  await typeInto(page, "rank-input", "4");
  await new Promise((r) => setTimeout(r, 250)); // the rank-4 request is in flight
  await typeInto(page, "rank-input", "8");
  await waitText(page, "trainable-params", /74 K/);
  await new Promise((r) => setTimeout(r, 800)); // the rank-4 answer arrives now
  assert.match(await text(page, "trainable-params"), /74 K/);
  const ranks = (await calls(page, "estimate")).map((c) => c.args.config.method.rank);
  assert.ok(ranks.includes(4) && ranks.at(-1) === 8, `both were asked: ${ranks}`);
  await assertClean(t, app);
});

test("an estimate rejection shows next to the controls; module checkboxes change the config", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await toMethodStep(page);
  await typeInto(page, "rank-input", "5");
  await waitText(page, "estimate-error", /method\.rank = 5/);
  // Only q_proj and v_proj at rank 8: the recorded estimate.s numbers.
  await typeInto(page, "rank-input", "8");
  for (const m of ["k_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]) await click(page, `target_modules-${m}`);
  await waitText(page, "trainable-params", /14\.3 K/);
  assert.equal(await page.$(sel("estimate-error")), null);
  const last = (await calls(page, "estimate")).at(-1);
  assert.deepEqual(last.args.config.method.target_modules, ["q_proj", "v_proj"]);
  // No module at all blocks Next.
  await click(page, "target_modules-q_proj");
  await click(page, "target_modules-v_proj");
  await click(page, "wizard-next");
  assert.match(await page.$eval("#step-message", (e) => e.textContent), /Target modules: choose at least one/);
  await assertClean(t, app);
});

test("the estimate says whether the run fits, and a suggested saver applies to the config", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await toMethodStep(page);
  await waitText(page, "memory-fit", /system RAM: fits/);
  // Sequences far longer than this machine's RAM allows (a recorded plan).
  await click(page, "wizard-next");
  await typeInto(page, "max-length-input", "60000");
  await typeInto(page, "micro-batch-input", "16");
  await click(page, "wizard-back");
  await waitText(page, "memory-fit", /does not fit: needs [\d.]+ GiB/);
  const buttons = await page.$$eval("[data-testid^=suggestion-]", (els) => els.map((e) => e.textContent));
  const i = buttons.findIndex((b) => b.startsWith("train.gradient_checkpointing"));
  assert.ok(i >= 0, `checkpointing is offered: ${buttons}`);
  assert.match(await text(page, `suggestion-${i}`), /= true/);
  assert.equal(await page.$eval(sel("checkpointing-input"), (e) => e.checked), false);
  const n0 = (await calls(page, "estimate")).length;
  await click(page, `suggestion-${i}`);
  await page.waitForFunction((n) => window.__fake.calls.filter((c) => c.cmd === "estimate").length > n, {}, n0);
  const last = (await calls(page, "estimate")).at(-1);
  assert.equal(last.args.config.train.gradient_checkpointing, true);
  assert.equal(last.args.config.data.max_length, 60000, "the other settings stay");
  assert.equal(await page.$eval(sel("checkpointing-input"), (e) => e.checked), true);
  // The storage dtype is part of the config the estimate gets.
  await page.select(sel("dtype-input"), "bf16");
  await page.waitForFunction(() => window.__fake.calls.filter((c) => c.cmd === "estimate").at(-1).args.config.model.dtype === "bf16");
  // So is a quantized base, and the dtype chosen before stays.
  await page.select(sel("quantize-input"), "q4_0");
  await page.waitForFunction(() => {
    const model = window.__fake.calls.filter((c) => c.cmd === "estimate").at(-1).args.config.model;
    return model.quantize === "q4_0" && model.dtype === "bf16";
  });
  await assertClean(t, app);
});

test("each card shows the engine's fields for its method: rsLoRA's switch, DoRA's, PiSSA's, CorDA's calibration file, MiSS's, Bone's, AdaLoRA's and KaSA's cards, full fine-tuning's modules and layers", async (t) => {
  const app = await openApp(env);
  const { page } = app;
  await toMethodStep(page);
  // LoRA: the engine's number fields and one checkbox per target module; a quantized base is offered.
  for (const id of ["rank-input", "alpha-input", "dropout-input", "use_rslora-input", "quantize-input"]) {
    assert.ok(await page.$(sel(id)), `${id} on the LoRA card`);
  }
  assert.equal(await page.$eval(sel("use_rslora-input"), (e) => e.checked), false);
  // rsLoRA: the same fields, its switch on, and the config carries it.
  await click(page, "method-rslora");
  assert.equal(await page.$eval(sel("use_rslora-input"), (e) => e.checked), true);
  await page.waitForFunction(() => window.__fake.calls.filter((x) => x.cmd === "estimate").at(-1)?.args.config.method.use_rslora === true);
  await waitText(page, "trainable-params", /148 K/);
  // A dropout of 1 is outside the engine's range [0, 1): the message says so and Next stays.
  await typeInto(page, "dropout-input", "1");
  await click(page, "wizard-next");
  assert.match(await page.$eval("#step-message", (e) => e.textContent), /Dropout must be less than 1/);
  await typeInto(page, "dropout-input", "0.1");
  // DoRA: its card names its paper; LoRA's fields, and the config asks for the magnitudes.
  assert.match(await page.$eval(sel("method-dora"), (e) => e.textContent), /DoRA.*Liu et al\. 2024/);
  await click(page, "method-dora");
  assert.equal(await page.$eval(sel("use_rslora-input"), (e) => e.checked), false);
  assert.equal(await page.$eval(sel("use_dora-input"), (e) => e.checked), true);
  await page.waitForFunction(() => {
    const m = window.__fake.calls.filter((x) => x.cmd === "estimate").at(-1)?.args.config.method;
    return m?.use_dora === true && m.use_rslora === false && m.kind === "lora";
  });
  // PiSSA: a choice field (a select of the engine's options) set to pissa; switching it back asks for plain LoRA.
  assert.match(await page.$eval(sel("method-pissa"), (e) => e.textContent), /PiSSA.*Meng et al\. 2024/);
  await click(page, "method-pissa");
  assert.deepEqual(await page.$$eval(`${sel("init-input")} option`, (os) => os.map((o) => o.value)), ["default", "pissa", "corda"]);
  assert.equal(await page.$eval(sel("init-input"), (e) => e.value), "pissa");
  assert.equal(await page.$eval(sel("use_dora-input"), (e) => e.checked), false);
  assert.equal(await page.$(sel("quantize-input")), null, "PiSSA decomposes an unquantized base: no quantize choice");
  await page.waitForFunction(() => {
    const m = window.__fake.calls.filter((x) => x.cmd === "estimate").at(-1)?.args.config.method;
    return m?.init === "pissa" && m.pissa_niter === 0 && m.use_dora === false;
  });
  // CorDA: its calibration file from a file dialog, back to the training rows with Clear.
  await click(page, "method-corda");
  assert.match(await text(page, "corda_data-input"), /training rows/);
  await page.evaluate(() => { window.__fake.pick.dataset = "/home/me/knowledge.jsonl"; });
  await click(page, "corda_data-choose");
  await waitText(page, "corda_data-input", /\/home\/me\/knowledge\.jsonl/);
  await page.waitForFunction(() => window.__fake.calls.filter((x) => x.cmd === "estimate").at(-1)?.args.config.method.corda_data === "/home/me/knowledge.jsonl");
  await click(page, "corda_data-clear");
  await waitText(page, "corda_data-input", /training rows/);
  await page.waitForFunction(() => window.__fake.calls.filter((x) => x.cmd === "estimate").at(-1)?.args.config.method.corda_data === null);
  await page.evaluate(() => { window.__fake.pick.dataset = null; });
  await click(page, "method-pissa");
  await page.select(sel("init-input"), "default");
  await page.waitForFunction(() => window.__fake.calls.filter((x) => x.cmd === "estimate").at(-1)?.args.config.method.init === "default");
  // MiSS: its own kind and fields (no alpha), its paper, and the engine's estimate for it.
  assert.match(await page.$eval(sel("method-miss"), (e) => e.textContent), /MiSS.*Kang & Yin 2024/);
  await click(page, "method-miss");
  assert.equal(await page.$(sel("alpha-input")), null, "MiSS has no alpha");
  assert.deepEqual(await page.$$eval(`${sel("mode-input")} option`, (os) => os.map((o) => o.value)), ["balance", "bat", "mini"]);
  assert.ok(await page.$(sel("quantize-input")), "MiSS's balance mode keeps the base frozen: a quantized base is offered");
  await waitText(page, "trainable-params", /154 K/);
  const miss = (await calls(page, "estimate")).at(-1).args.config.method;
  assert.deepEqual({ kind: miss.kind, mode: miss.mode, rank: miss.rank }, { kind: "miss", mode: "balance", rank: 32 });
  // Bone: MiSS in bat mode at 64, which the tiny model's 344-wide MLP does not allow: the engine's
  // refusal names the width that fits, and 8 gets an estimate.
  await click(page, "method-bone");
  assert.equal(await page.$eval(sel("mode-input"), (e) => e.value), "bat");
  assert.equal(await page.$(sel("quantize-input")), null, "Bone multiplies the base weight: no quantized base");
  await waitText(page, "estimate-error", /8 fits every target layer/);
  await typeInto(page, "rank-input", "8");
  await waitText(page, "trainable-params", /38\.4 K/);
  assert.equal(await page.$(sel("estimate-error")), null);
  // AdaLoRA: its ranks and schedule from the engine (no single rank), its paper, and the engine's
  // estimate at the card's ranks and at smaller ones.
  assert.match(await page.$eval(sel("method-adalora"), (e) => e.textContent), /AdaLoRA.*Zhang et al\. 2023/);
  await click(page, "method-adalora");
  for (const id of ["init_r-input", "target_r-input", "tinit-input", "tfinal-input", "delta_t-input", "orth_reg_weight-input"]) {
    assert.ok(await page.$(sel(id)), `AdaLoRA offers ${id}`);
  }
  assert.equal(await page.$(sel("rank-input")), null, "AdaLoRA's rank is init_r and target_r");
  await waitText(page, "trainable-params", /111 K/);
  await typeInto(page, "target_r-input", "4");
  await typeInto(page, "init_r-input", "6");
  await waitText(page, "trainable-params", /55\.7 K/);
  const ada = (await calls(page, "estimate")).at(-1).args.config.method;
  assert.deepEqual({ kind: ada.kind, init_r: ada.init_r, target_r: ada.target_r }, { kind: "adalora", init_r: 6, target_r: 4 });
  // KaSA: its paper, its two regulariser weights and its rank from the engine, no quantized base
  // (it truncates the unquantized weights), and the engine's estimate at two ranks.
  assert.match(await page.$eval(sel("method-kasa"), (e) => e.textContent), /KaSA.*Wang, Jiang et al\. 2024/);
  await click(page, "method-kasa");
  for (const id of ["rank-input", "alpha-input", "beta-input", "gamma-input"]) {
    assert.ok(await page.$(sel(id)), `KaSA offers ${id}`);
  }
  assert.equal(await page.$(sel("quantize-input")), null, "KaSA truncates the base: no quantized base");
  await waitText(page, "trainable-params", /74\.2 K/);
  await typeInto(page, "rank-input", "4");
  await waitText(page, "trainable-params", /37\.1 K/);
  const kasa = (await calls(page, "estimate")).at(-1).args.config.method;
  assert.deepEqual({ kind: kasa.kind, rank: kasa.rank, beta: kasa.beta }, { kind: "kasa", rank: 4, beta: 0.0001 });
  // HFT: its paper, its trained share, seed and stage from the engine, no rank and no quantized
  // base (it trains base weights), and the engine's count of the drawn half and of a quarter.
  assert.match(await page.$eval(sel("method-hft"), (e) => e.textContent), /HFT.*Hui et al\. 2024/);
  await click(page, "method-hft");
  for (const id of ["fraction-input", "seed-input", "stage-input"]) {
    assert.ok(await page.$(sel(id)), `HFT offers ${id}`);
  }
  for (const id of ["rank-input", "quantize-input"]) {
    assert.equal(await page.$(sel(id)), null, `${id} is not an HFT field`);
  }
  await waitText(page, "trainable-params", /347 K/);
  await typeInto(page, "fraction-input", "0.25");
  await waitText(page, "trainable-params", /182 K/);
  const hft = (await calls(page, "estimate")).at(-1).args.config.method;
  assert.deepEqual(hft, { kind: "hft", fraction: 0.25, seed: 0, stage: 0 });
  // Full fine-tuning: its own fields from the engine, no LoRA fields, no quantized base.
  await click(page, "method-full");
  for (const id of ["rank-input", "alpha-input", "use_rslora-input", "quantize-input"]) {
    assert.equal(await page.$(sel(id)), null, `${id} is not a full fine-tuning field`);
  }
  assert.equal(await page.$eval(sel("modules-all"), (e) => e.checked), true);
  assert.ok(await page.$(sel("modules-lm_head")));
  await page.click(sel("modules-all"));
  await page.click(sel("modules-q_proj"));
  await typeInto(page, "layers-input", "0, 1");
  await page.waitForFunction(() => {
    const c = window.__fake.calls.filter((x) => x.cmd === "estimate").at(-1);
    return c && JSON.stringify(c.args.config.method.layers) === "[0,1]";
  });
  const method = (await calls(page, "estimate")).at(-1).args.config.method;
  assert.deepEqual(method, { kind: "full", modules: ["q_proj"], layers: [0, 1] });
  await assertClean(t, app);
});
