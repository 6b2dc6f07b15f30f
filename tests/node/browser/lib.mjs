// What the browser tests share: Debian's Chromium under Playwright, headless, with a
// fresh profile; pages that fail on any script error; screenshots into ARTIFACTS.

import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const BASE = process.env.BASE_URL;
export const ARTIFACTS = process.env.ARTIFACTS;
mkdirSync(ARTIFACTS, { recursive: true });

/** How long any one wait may take. */
export const WAIT = 30_000;

export async function launch() {
  return chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "ecliptic-chromium-")), {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 720 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** A new browser (own profile, own storage) with one page. */
export async function session(viewport) {
  const context = await launch();
  const page = context.pages()[0] ?? (await context.newPage());
  if (viewport) await page.setViewportSize(viewport);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.assertNoErrors = () => {
    if (errors.length) throw new Error(`the page reported errors: ${errors.join(" | ")}`);
  };
  return { context, page };
}

/** Waits until `selector`'s text matches `pattern` (a RegExp); returns the text. */
export async function waitText(page, selector, pattern) {
  try {
    await page.waitForFunction(
      ([sel, source, flags]) => new RegExp(source, flags).test(document.querySelector(sel)?.textContent ?? ""),
      [selector, pattern.source, pattern.flags],
      { timeout: WAIT, polling: "raf" },
    );
  } catch (e) {
    const text = await page.textContent(selector).catch(() => null);
    throw new Error(`${selector} never matched ${pattern}: it shows ${JSON.stringify(text)}`);
  }
  return page.textContent(selector);
}

export async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

export function step(text) {
  console.log(`· ${text}`);
}
