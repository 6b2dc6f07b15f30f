// The operator console in a real browser: a non-admin is refused; an admin sees the tick
// move and a connected player, and sends a notification (the test checks a /ws client
// receives it).

import { session, shot, step, waitText, BASE } from "./lib.mjs";

const { PLAYER, PLAYER_PASSWORD, ADMIN, ADMIN_PASSWORD, CONNECTED_PLAYER, NOTE_TITLE } = process.env;

async function signIn(page, username, password) {
  await page.goto(`${BASE}/console`);
  await page.fill("#username", username);
  await page.fill("#password", password);
  await page.click("#signin-form button[type=submit]");
}

const { context, page } = await session({ width: 1280, height: 1000 });

step("a player who is not an admin is refused");
await signIn(page, PLAYER, PLAYER_PASSWORD);
await waitText(page, "#signin-error", /^Refused: this console is for accounts with the admin role\.$/);
if (await page.isVisible("#console")) throw new Error("the console opened for a non-admin");
await shot(page, "console-refused");

step("an admin sees the live tick and the connected player");
await signIn(page, ADMIN, ADMIN_PASSWORD);
await page.waitForSelector("#console:not([hidden])");
const first = await waitText(page, "#tick-now", /^#\d+ at 20 Hz$/);
await waitText(page, "#tick-now", new RegExp(`^(?!${first.replace(/[#]/g, "\\#")}$)#\\d+ at 20 Hz$`));
await waitText(page, "#tick-numbers", /^p50 \d+ µs · p99 \d+ µs · max \d+ µs · overruns \d+$/);
await waitText(page, "#players td:first-child", new RegExp(`^${CONNECTED_PLAYER}$`));
await waitText(page, "#instances tr:first-child td:nth-child(3)", /^1$/);
await waitText(page, "#connections", /game1/);

step("send a notification");
await page.selectOption("#notify-level", "warning");
await page.fill("#notify-title", NOTE_TITLE);
await page.fill("#notify-message", "the server restarts in 10 minutes");
await page.click("#notify-form button[type=submit]");
await waitText(page, "#notify-result", /^Sent to 1 subscriber\(s\)\.$/);

step("look up the player's account and run the ledger check");
await page.fill("#account-name", PLAYER);
await page.click("#account-form button[type=submit]");
await waitText(page, "#account", new RegExp(`username${PLAYER}`));
await waitText(page, "#account", /statusactive/);
await page.click("#ledger-check");
await waitText(page, "#ledger-result", /^The ledger balances: /);
await shot(page, "console");

page.assertNoErrors();
await context.close();
step("done");
