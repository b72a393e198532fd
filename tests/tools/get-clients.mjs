// GET requests from graphql-request and urql (preferGetMethod), as their users write them:
// argv[2] is the endpoint, argv[3] "plain" (no extra header) or "preflight" (the header
// docs/clients.md shows). Prints one JSON object: each client's data or error.
import { GraphQLClient } from 'graphql-request';
import { Client, fetchExchange, gql } from '@urql/core';

const [url, mode] = process.argv.slice(2);
const headers = mode === 'preflight' ? { 'apollo-require-preflight': 'true' } : {};
const query = '{ viewer { scopes } }';
const out = {};
// Each client's requests, as they went out.
const recorder = (name) => (input, init = {}) => {
  (out.methods ??= {})[name] = init.method ?? 'GET';
  return fetch(input, init);
};

try {
  const client = new GraphQLClient(url, { method: 'GET', headers, fetch: recorder('graphqlRequest') });
  out.graphqlRequest = { data: await client.request(query) };
} catch (e) {
  out.graphqlRequest = { error: e.response?.errors ?? String(e), status: e.response?.status };
}

const urql = new Client({
  url,
  exchanges: [fetchExchange],
  preferGetMethod: 'force',
  fetchOptions: { headers },
  fetch: recorder('urql'),
});
const r = await urql.query(gql(query), {}).toPromise();
out.urql = r.error
  ? { error: r.error.graphQLErrors.map((e) => ({ message: e.message, extensions: e.extensions })), network: r.error.networkError ? String(r.error.networkError) : null, status: r.error.response?.status }
  : { data: r.data };
console.log(JSON.stringify(out));
