// A real OAuth 2.0 authorization server (panva's oidc-provider) for tests/interop.rs: Passerelle's
// external identity provider. It listens on 127.0.0.1 (port 0, or IDP_PORT) and prints
// "ISSUER <url>" once it does.
//
// IDP_CONFIG (JSON) describes it:
//   clients:      [{ client_id, client_secret, partner?, scope? }]; `scope` is what the client may
//                 get at every resource; `partner` goes into access tokens as `partnerClaim`.
//   resources:    { "<resource indicator URL>": { audience?, format: "jwt" | "opaque", alg?, ttl? } }
//   partnerClaim: the claim name carrying the partner.
//
// Tokens come from the client_credentials grant with an RFC 8707 `resource`; JWT access tokens
// are signed with the provider's own keys (RSA, P-256 and Ed25519, generated at start and
// published at jwks_uri); opaque ones are checked by RFC 7662 introspection and can be revoked
// (RFC 7009).
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(process.env.IDP_CONFIG ?? '{}');
const clients = config.clients ?? [];
const resources = config.resources ?? {};
const partnerClaim = config.partnerClaim ?? 'partner';
const byId = new Map(clients.map((c) => [c.client_id, c]));

function jwk(type, options, kid, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const keys = [
  jwk('rsa', { modulusLength: 2048 }, 'rsa-1', 'RS256'),
  jwk('ec', { namedCurve: 'P-256' }, 'ec-1', 'ES256'),
  jwk('ed25519', {}, 'ed-1', 'EdDSA'),
];

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(process.env.IDP_PORT ?? 0), '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: clients.map(({ client_id, client_secret }) => ({
    client_id,
    client_secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A token request must name its resource.
      defaultResource: async () => undefined,
      getResourceServerInfo: async (ctx, indicator, client) => {
        const resource = resources[indicator];
        if (!resource) {
          throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        }
        return {
          scope: byId.get(client.clientId)?.scope ?? '',
          audience: resource.audience ?? indicator,
          accessTokenFormat: resource.format ?? 'jwt',
          accessTokenTTL: resource.ttl ?? 600,
          ...(resource.format === 'opaque' ? {} : { jwt: { sign: { alg: resource.alg ?? 'RS256' } } }),
        };
      },
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const partner = byId.get(token.clientId)?.partner;
    return partner ? { [partnerClaim]: partner } : undefined;
  },
  // The cookie keys are unused by the client credentials grant; set only to silence a warning.
  cookies: { keys: ['passerelle-interop-test'] },
});
provider.on('server_error', (_ctx, err) => console.error(`provider error: ${err?.stack ?? err}`));

server.on('request', provider.callback());
console.log(`ISSUER ${issuer}`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
