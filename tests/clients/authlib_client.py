"""authlib, unmodified, as a partner's Python service would use it against Passerelle: the
OpenID discovery document, the client credentials grant, the token verified against the JWKS,
then one GraphQL query with it.

Env: ISSUER, CLIENT_ID, CLIENT_SECRET, SCOPE. Prints one line: `RESULT {json}`.
"""
import json
import os

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt

issuer = os.environ["ISSUER"]
metadata = requests.get(issuer + "/.well-known/openid-configuration", timeout=10).json()
session = OAuth2Session(
    os.environ["CLIENT_ID"],
    os.environ["CLIENT_SECRET"],
    scope=os.environ["SCOPE"],
    token_endpoint_auth_method="client_secret_basic",
)
token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
keys = JsonWebKey.import_key_set(requests.get(metadata["jwks_uri"], timeout=10).json())
claims = jwt.decode(
    token["access_token"],
    keys,
    claims_options={
        "iss": {"essential": True, "value": metadata["issuer"]},
        "aud": {"essential": True, "value": "passerelle"},
    },
)
claims.validate()
answer = session.post(
    issuer + "/graphql",
    json={"query": "{ viewer { partner { slug } scopes } }"},
    timeout=10,
).json()
print(
    "RESULT "
    + json.dumps(
        {
            "issuer": metadata["issuer"],
            "alg": claims.header["alg"],
            "iss": claims["iss"],
            "partner": claims["partner"],
            "graphql": answer,
        }
    )
)
