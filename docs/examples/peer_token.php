<?php
// A peer service signs a token for Agora with firebase/php-jwt (docs/peers.md).
// composer require firebase/php-jwt
// Run: AGORA_URL=... PEER_ISSUER=billing PEER_SECRET=... USER_ID=42 php peer_token.php
require __DIR__ . '/vendor/autoload.php';

use Firebase\JWT\JWT;

$now = time();
$token = JWT::encode([
    'sub' => getenv('USER_ID'),      // the user, as Agora's id (a string, not an int)
    'iss' => getenv('PEER_ISSUER'),  // the issuer as listed in AGORA_TRUSTED_ISSUERS
    'iat' => $now,
    'exp' => $now + 600,
], getenv('PEER_SECRET'), 'HS256');

$context = stream_context_create(['http' => [
    'header' => "Authorization: Bearer $token\r\n",
    'ignore_errors' => true,
]]);
$body = file_get_contents(getenv('AGORA_URL') . '/auth/api/me', false, $context);
preg_match('{HTTP/\S+ (\d+)}', $http_response_header[0], $status);
echo json_encode(['status' => (int) $status[1], 'body' => json_decode($body)]), "\n";
