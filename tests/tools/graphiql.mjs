// Opens Passerelle's /graphiql (argv[2] is the server's origin) in Debian's headless Chromium
// with every request off loopback blocked, pastes a bearer token (argv[3]) in the headers
// editor, re-fetches the schema, opens the docs explorer and runs a query. Prints one JSON
// object with what happened; tests/tools.rs judges it.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [origin, token] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'passerelle-chromium-'));
const result = { blocked: [], served: [], pageErrors: [], console: [], steps: [] };
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  // The network is off: only the server under test answers.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) {
      result.served.push(url);
      return route.continue();
    }
    result.blocked.push(url);
    return route.abort('internetdisconnected');
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => result.pageErrors.push(String(e)));
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`));
  const timeout = 30_000;

  await page.goto(`${origin}/graphiql`, { waitUntil: 'load', timeout });
  await page.waitForSelector('.graphiql-container', { timeout });
  result.steps.push('rendered');

  // Paste the token in the headers editor (open by default), as a user would.
  const headers = page.locator('section[aria-label="Headers"] .graphiql-editor:not(.hidden) .CodeMirror');
  await headers.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(JSON.stringify({ Authorization: `Bearer ${token}` }));
  result.steps.push('headers');

  // The schema, as the token may see it: GraphiQL's own introspection. The headers editor hands
  // its text to GraphiQL after a debounce, so the first re-fetch may still go without it.
  await page.getByRole('button', { name: /Documentation Explorer/ }).click();
  for (let attempt = 1; ; attempt++) {
    await page.getByRole('button', { name: 'Re-fetch GraphQL schema' }).click();
    try {
      await page.waitForSelector('.graphiql-doc-explorer-root-type', { timeout: 3_000 });
      result.schemaAttempts = attempt;
      break;
    } catch (e) {
      if (attempt === 5) throw e;
    }
  }
  result.docs = await page.locator('.graphiql-doc-explorer').innerText();
  // Into a type: the explorer lists the fields introspection returned.
  await page.locator('.graphiql-doc-explorer a', { hasText: /^Query$/ }).first().click();
  await page.waitForSelector('.graphiql-doc-explorer-field-name', { timeout });
  result.queryFields = await page.locator('.graphiql-doc-explorer-field-name').allInnerTexts();
  result.steps.push('docs');

  // Type a query and run it.
  const editor = page.locator('.graphiql-query-editor .CodeMirror');
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText('{ viewer { scopes partner { slug } } actions(first: 2) { totalCount } }');
  await page.locator('.graphiql-execute-button').click();
  await page.waitForFunction(
    () => document.querySelector('.graphiql-response')?.innerText.includes('totalCount'),
    null,
    { timeout },
  );
  result.response = await page.locator('.graphiql-response').innerText();
  result.steps.push('ran');
} catch (e) {
  result.error = String(e);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
