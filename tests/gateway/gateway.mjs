// An Apollo Federation v2 gateway for tests/federation.rs: composes the subgraphs named in
// SUBGRAPHS (a JSON list of {name, url}) and prints "GATEWAY <url>" once it listens on loopback.
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';
import { ApolloGateway, IntrospectAndCompose } from '@apollo/gateway';

const subgraphs = JSON.parse(process.env.SUBGRAPHS ?? '[]');
const gateway = new ApolloGateway({
  supergraphSdl: new IntrospectAndCompose({ subgraphs }),
});
const server = new ApolloServer({ gateway });
try {
  const { url } = await startStandaloneServer(server, { listen: { port: 0, host: '127.0.0.1' } });
  console.log(`GATEWAY ${url}`);
} catch (e) {
  console.error(`gateway failed to start: ${e?.message ?? e}`);
  process.exit(1);
}
