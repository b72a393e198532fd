// Prints graphql-js 16's standard introspection query with every option on: the one GraphiQL,
// GraphQL Code Generator, Postman and schemathesis send.
import { getIntrospectionQuery } from 'graphql';

process.stdout.write(
  getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
    oneOf: true,
  }),
);
