// Mounts GraphiQL on this server's /graphql. Everything it loads comes from this server.
(function () {
  var fetcher = GraphiQL.createFetcher({ url: new URL('graphql', location.href).toString() });
  var query =
    '# Passerelle GraphiQL. To act as your client, open "Headers" below and paste\n' +
    '#   {"Authorization": "Bearer <your access token>"}\n' +
    '# (a token comes from POST /oauth/token with your client id and secret).\n' +
    '# Without one you are anonymous.\n' +
    '{\n  viewer {\n    scopes\n  }\n}\n';
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: query,
      defaultEditorToolsVisibility: 'headers',
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
    })
  );
})();
