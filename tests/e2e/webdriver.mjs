// A small W3C WebDriver client over fetch: just what the app's end-to-end
// test needs (sessions, finding elements, clicks, typing, text, scripts).

const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

export class WebDriver {
  constructor(url) {
    this.url = url;
    this.session = null;
  }

  async call(method, path, body) {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json().catch(() => ({}));
    if (!res.ok) {
      const v = json.value ?? {};
      throw new Error(`${method} ${path}: ${v.error ?? res.status}: ${v.message ?? ""}`);
    }
    return json.value;
  }

  async start(capabilities) {
    const value = await this.call("POST", "/session", {
      capabilities: { alwaysMatch: capabilities },
    });
    this.session = value.sessionId;
  }

  s(path) {
    return `/session/${this.session}${path}`;
  }

  async quit() {
    if (this.session) await this.call("DELETE", this.s("")).catch(() => {});
    this.session = null;
  }

  /** The element with this data-testid (the first one), or null. */
  async find(testid) {
    try {
      const v = await this.call("POST", this.s("/element"), {
        using: "css selector",
        value: `[data-testid="${testid}"]`,
      });
      return v[ELEMENT];
    } catch {
      return null;
    }
  }

  async findAll(testid) {
    const v = await this.call("POST", this.s("/elements"), {
      using: "css selector",
      value: `[data-testid="${testid}"]`,
    });
    return v.map((e) => e[ELEMENT]);
  }

  /** Clicks the element; the UI re-renders often, so a click that lands
   * on a node replaced meanwhile is retried on the new one. */
  async click(testid) {
    for (let attempt = 0; ; attempt++) {
      const id = await this.waitFor(testid, { visible: true });
      try {
        await this.call("POST", this.s(`/element/${id}/click`), {});
        return;
      } catch (e) {
        if (attempt >= 5 || !/stale/.test(e.message)) throw e;
      }
    }
  }

  /** The element's rendered text ("" when absent), read in the page so a
   * re-render between finding and reading cannot fail it. */
  async text(testid) {
    return this.script(
      "const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`); return e ? e.innerText : '';",
      [testid],
    );
  }

  async type(testid, text) {
    const id = await this.waitFor(testid, { visible: true });
    await this.call("POST", this.s(`/element/${id}/clear`), {});
    await this.call("POST", this.s(`/element/${id}/value`), { text });
  }

  async script(source, args = []) {
    return this.call("POST", this.s("/execute/sync"), { script: source, args });
  }

  /** Waits for the element (displayed, with `visible`); returns its id. */
  async waitFor(testid, { visible = false, timeout = 60_000 } = {}) {
    let id = null;
    await this.until(`${testid} to appear`, async () => {
      id = await this.find(testid);
      if (!id) return false;
      if (!visible) return true;
      return this.call("GET", this.s(`/element/${id}/displayed`)).catch(() => false);
    }, timeout);
    return id;
  }

  /** Polls `check` until it returns something truthy. */
  async until(what, check, timeout = 60_000) {
    const end = Date.now() + timeout;
    for (;;) {
      const v = await check();
      if (v) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
