// The game page in a real browser: register, join sol-1, see the own ship drawn, fly,
// dock, buy and sell, repair, and chat with a second browser.

import { session, shot, step, waitText, BASE } from "./lib.mjs";

const own = [79, 209, 255]; // render.js's OWN_SHIP_COLOUR

async function signUpAndFly(page, username) {
  await page.goto(`${BASE}/`);
  await page.fill("#username", username);
  await page.fill("#password", `${username}-password`);
  await page.click("#register");
  await page.waitForSelector("#join-form:not([hidden])");
  await shot(page, `game-${username}-joining`);
  await page.click("#join");
  await page.waitForSelector("#play:not([hidden])");
  await waitText(page, "#hud-docked", /^earth-orbit-station$/);
}

/** The own ship's colour is drawn at the middle of the canvas. */
async function ownShipDrawn(page) {
  await page.waitForFunction(() => window.eclipticStats?.ownShipAt != null);
  const pixels = await page.evaluate(() => {
    const canvas = document.getElementById("view");
    const x = Math.floor(canvas.width / 2) - 4;
    const y = Math.floor(canvas.height / 2) - 4;
    return Array.from(canvas.getContext("2d").getImageData(x, y, 8, 8).data);
  });
  for (let i = 0; i < pixels.length; i += 4) {
    if (own.every((c, k) => Math.abs(pixels[i + k] - c) < 8)) return;
  }
  throw new Error("the own ship is not drawn at the centre of the view");
}

const number = (text) => Number(text.trim());
const at = (page) => page.evaluate(() => window.eclipticStats.ownShipAt);

const alice = await session();
const page = alice.page;
step("register alice and join sol-1");
await signUpAndFly(page, "alice");
await ownShipDrawn(page);
// The page offers the binary encoding and the server speaks it: everything below (flying
// by compact inputs, the market, repairs) runs over it.
const encoding = await page.evaluate(() => window.eclipticStats.encoding);
if (encoding !== "binary") throw new Error(`the page speaks ${encoding}, not the binary encoding`);
const credits = number(await waitText(page, "#hud-credits", /^5000$/));

step("fly: thrust away from the station");
const before = await at(page);
await page.keyboard.down("KeyW");
await waitText(page, "#hud-docked", /^no$/);
await page.keyboard.up("KeyW");
await page.waitForFunction(
  (start) => {
    const now = window.eclipticStats.ownShipAt;
    return now && Math.hypot(now.x - start.x, now.y - start.y) > 5;
  },
  before,
  { timeout: 30_000 },
);
await ownShipDrawn(page);
await shot(page, "game-flying");

step("dock again");
await page.keyboard.down("KeyE");
await waitText(page, "#hud-docked", /^earth-orbit-station$/);
await page.keyboard.up("KeyE");
await page.waitForSelector("#market:not([hidden])");

step("buy 5 food");
const food = '#market-rows tr[data-commodity="food"]';
await page.waitForSelector(food);
const buyPrice = number(await page.textContent(`${food} td:nth-child(2)`));
await page.fill("#trade-qty", "5");
await page.click(`${food} button[data-side="buy"]`);
await waitText(page, "#hud-cargo", /^food 5$/);
const afterBuy = number(await waitText(page, "#hud-credits", new RegExp(`^${credits - 5 * buyPrice}$`)));
await waitText(page, "#trade-result", /^5 food at \d+ = \d+ credits$/);
await waitText(page, `${food} td:nth-child(5)`, /^5$/);

step("sell 2 food");
await page.fill("#trade-qty", "2");
await page.click(`${food} button[data-side="sell"]`);
await waitText(page, "#hud-cargo", /^food 3$/);
const afterSell = number(await waitText(page, "#hud-credits", /^\d+$/));
if (!(afterSell > afterBuy)) throw new Error(`selling did not pay: ${afterBuy} → ${afterSell}`);

step("an error is shown plainly: sell more than is held");
await page.fill("#trade-qty", "50");
await page.click(`${food} button[data-side="sell"]`);
await waitText(page, "#trade-result", /^INSUFFICIENT_CARGO: /);
await waitText(page, "#hud-cargo", /^food 3$/);

step("repair");
await page.click("#repair");
await waitText(page, "#trade-result", /^Repaired \d+ hp for \d+ credits; hull 100$/);
await waitText(page, "#hud-hull", /^100$/);
await shot(page, "game-docked-market");

step("a second browser: bob joins; both chat");
const bob = await session();
await signUpAndFly(bob.page, "bob");
await waitText(page, "#chat-online", /\bbob\b/);
await waitText(bob.page, "#chat-online", /\balice\b/);
await page.fill("#chat-input", "hello from alice");
await page.press("#chat-input", "Enter");
await waitText(bob.page, "#chat-messages", /alice: hello from alice/);
await bob.page.fill("#chat-input", "/w alice see you at Mars");
await bob.page.press("#chat-input", "Enter");
await waitText(page, "#chat-messages", /bob → you: see you at Mars/);
await shot(page, "game-alice-chat");
await shot(bob.page, "game-bob-chat");

page.assertNoErrors();
bob.page.assertNoErrors();
await bob.context.close();
await alice.context.close();
step("done");
