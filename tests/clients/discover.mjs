// openid-client and jose, unmodified, as a partner's Node.js service would use them against
// Passerelle: discovery from the issuer URL alone, the client credentials grant, the token
// verified against the JWKS the metadata names, then one GraphQL query with it.
//
// Env: ISSUER, CLIENT_ID, CLIENT_SECRET, SCOPE, ALGORITHM (`oidc`: /.well-known/openid-configuration,
// `oauth2`: RFC 8414 metadata). Prints one line: `RESULT {json}`.
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify, decodeProtectedHeader } from 'jose';

const { ISSUER, CLIENT_ID, CLIENT_SECRET, SCOPE, ALGORITHM } = process.env;

const config = await client.discovery(
  new URL(ISSUER),
  CLIENT_ID,
  CLIENT_SECRET,
  undefined,
  // Loopback in the tests: plain http must be allowed explicitly.
  { execute: [client.allowInsecureRequests], algorithm: ALGORITHM || 'oidc' },
);
const metadata = config.serverMetadata();
const tokens = await client.clientCredentialsGrant(config, { scope: SCOPE });
const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri));
const { payload } = await jwtVerify(tokens.access_token, jwks, {
  issuer: metadata.issuer,
  audience: 'passerelle',
});
const response = await fetch(new URL('/graphql', ISSUER), {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.access_token}` },
  body: JSON.stringify({ query: '{ viewer { partner { slug } scopes } }' }),
});
console.log('RESULT ' + JSON.stringify({
  issuer: metadata.issuer,
  alg: decodeProtectedHeader(tokens.access_token).alg,
  iss: payload.iss,
  partner: payload.partner,
  scope: tokens.scope,
  graphql: await response.json(),
}));
