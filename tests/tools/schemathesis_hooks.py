"""Schemathesis hooks for tests/tools.rs (loaded with SCHEMATHESIS_HOOKS=schemathesis_hooks).

Schemathesis's own `not_a_server_error` check fails any GraphQL answer with `errors`, yet a
refused mutation (UNAUTHENTICATED) or a missing scope (FORBIDDEN) is the right answer to a
fuzzed request. What must never happen is a server error: a 5xx, or an INTERNAL_SERVER_ERROR.
"""

import schemathesis


@schemathesis.check
def no_server_error(ctx, response, case):
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code}: {response.text[:500]}")
    if "INTERNAL_SERVER_ERROR" in response.text:
        raise AssertionError(f"internal server error: {response.text[:500]}")
