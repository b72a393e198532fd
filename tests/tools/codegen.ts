// GraphQL Code Generator, as a partner's dashboard project sets it up: types for the schema
// and for each operation in dashboard/, read from the live server with the partner's token.
import type { CodegenConfig } from '@graphql-codegen/cli';

const token = process.env.PASSERELLE_TOKEN;

const config: CodegenConfig = {
  schema: [
    {
      [process.env.PASSERELLE_URL ?? 'http://127.0.0.1:8080/graphql']: {
        // A token with the `introspect` scope (not needed when public_introspection is on).
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      },
    },
  ],
  documents: ['dashboard/**/*.graphql'],
  generates: {
    [process.env.CODEGEN_OUT ?? 'generated/graphql.ts']: {
      plugins: ['typescript', 'typescript-operations'],
      config: {
        enumsAsTypes: true,
        scalars: { PartialDate: 'string' },
      },
    },
  },
};

export default config;
