// A peer service signs a token for Agora with Node's `jsonwebtoken`, defaults and all
// (docs/peers.md). Run: AGORA_URL=... PEER_ISSUER=billing PEER_SECRET=... USER_ID=42 node peer_token.js
const jwt = require("jsonwebtoken");

const token = jwt.sign(
  { sub: process.env.USER_ID }, // the user, as Agora's id (a string)
  process.env.PEER_SECRET, // the secret listed for this issuer in AGORA_TRUSTED_ISSUERS
  { algorithm: "HS256", issuer: process.env.PEER_ISSUER, expiresIn: "10m" }, // adds iat, exp, iss
);

fetch(`${process.env.AGORA_URL}/auth/api/me`, {
  headers: { Authorization: `Bearer ${token}` },
}).then(async (response) => {
  console.log(JSON.stringify({ status: response.status, body: await response.json() }));
});
