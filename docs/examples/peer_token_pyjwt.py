"""A peer service signs a token for Agora with PyJWT (docs/peers.md).

Run: AGORA_URL=... PEER_ISSUER=billing PEER_SECRET=... USER_ID=42 python peer_token_pyjwt.py
"""

import datetime
import json
import os
import urllib.request

import jwt

now = datetime.datetime.now(datetime.UTC)
token = jwt.encode(
    {
        "sub": os.environ["USER_ID"],  # the user, as Agora's id (a string)
        "iss": os.environ["PEER_ISSUER"],  # the issuer as listed in AGORA_TRUSTED_ISSUERS
        "iat": now,
        "exp": now + datetime.timedelta(minutes=10),
    },
    os.environ["PEER_SECRET"],
    algorithm="HS256",
)

request = urllib.request.Request(
    os.environ["AGORA_URL"] + "/auth/api/me", headers={"Authorization": f"Bearer {token}"}
)
with urllib.request.urlopen(request) as response:  # noqa: S310 - the URL is the operator's
    print(json.dumps({"status": response.status, "body": json.load(response)}))
