// The game page keeps its frame rate with a crowd in view: with SHIPS other ships on
// screen in every frame, frames (requestAnimationFrame timestamps, recorded by the page)
// come at 50 per second or more.

import { session, shot, step, waitText, BASE } from "./lib.mjs";

const ships = Number(process.env.SHIPS);
const { context, page } = await session({ width: 1920, height: 1080 });
await page.goto(`${BASE}/`);
await page.fill("#username", process.env.PLAYER);
await page.fill("#password", process.env.PLAYER_PASSWORD);
await page.click("#login");
await page.waitForSelector("#join-form:not([hidden])");
await page.click("#join");
await page.waitForSelector("#play:not([hidden])");
await waitText(page, "#hud-docked", /^earth-orbit-station$/);

step(`wait until ${ships} other ships are on screen`);
await page.waitForFunction((n) => window.eclipticStats.shipsOnScreen >= n, ships, { timeout: 60_000 });

// Six seconds: longer than the server's snapshot interval (5 s), whose budget-limited
// entity list must not make the crowd blink.
step("measure six seconds of frames");
const result = await page.evaluate(async () => {
  const stats = window.eclipticStats;
  const start = performance.now();
  // The fewest ships on screen in any frame of the measurement.
  let fewest = Infinity;
  await new Promise((resolve) => {
    const watch = (now) => {
      fewest = Math.min(fewest, stats.shipsOnScreen);
      if (now - start < 6000) requestAnimationFrame(watch);
      else resolve();
    };
    requestAnimationFrame(watch);
  });
  const frames = stats.frames.filter((t) => t >= start);
  const span = frames.at(-1) - frames[0];
  let slowest = 0;
  for (let i = 1; i < frames.length; i++) slowest = Math.max(slowest, frames[i] - frames[i - 1]);
  return { fps: ((frames.length - 1) * 1000) / span, frames: frames.length, slowest, onScreen: fewest };
});
console.log(`fps ${result.fps.toFixed(1)} over ${result.frames} frames; slowest frame ${result.slowest.toFixed(1)} ms; at least ${result.onScreen} ships on screen in every frame`);
await shot(page, "game-crowd");
if (result.onScreen < ships) throw new Error(`a frame had only ${result.onScreen} ships on screen`);
if (!(result.fps >= 50)) throw new Error(`the page drew ${result.fps.toFixed(1)} frames per second; at least 50 are needed`);
page.assertNoErrors();
await context.close();
step("done");
