// Runs the GraphQL-over-HTTP audits of graphql-http against URL (argv[2]) and prints one JSON
// array: every audit's name, status (ok, warn, error, notice) and reason.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
const results = await auditServer({ url });
const out = [];
for (const r of results) {
  let reason = r.reason;
  if (r.status !== 'ok' && r.response) {
    try {
      reason += ` [${r.response.status}] ${(await r.response.text()).slice(0, 300)}`;
    } catch {
      /* body already read */
    }
  }
  out.push({ name: r.name, status: r.status, reason });
}
console.log(JSON.stringify(out));
