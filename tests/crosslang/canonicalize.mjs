// Reads JSON on stdin and answers, per task, what an independent Node.js runtime computes with
// npm `canonicalize` (RFC 8785) and node:crypto: canonical bytes (base64), sha256 digests and
// Ed25519 verification. Used by tests/crosslang/test_canonical_node.py; no network.
//
// stdin: {"task": "canonicalize", "values": [<json>...]}
//    or  {"task": "envelope", "body": "<the served config body>", "keys": {"<kid>": "<b64 raw>"}}
import { createHash, createPublicKey, verify } from 'node:crypto';
import canonicalize from 'canonicalize';

const sha256 = (text) => createHash('sha256').update(Buffer.from(text, 'utf8')).digest('hex');

function publicKey (raw) {
  const x = Buffer.from(raw, 'base64').toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
}

function verified (text, signature, keys) {
  const key = keys[signature.kid];
  if (!key) return false;
  return verify(null, Buffer.from(text, 'utf8'), publicKey(key), Buffer.from(signature.value, 'base64'));
}

function envelope (body, keys) {
  const parsed = JSON.parse(body);
  const canonical = canonicalize(parsed.snapshot);
  const bundles = {};
  for (const [name, release] of Object.entries(parsed.snapshot.agents)) {
    for (const role of ['stable', 'candidate']) {
      const version = release[role];
      if (!version) continue;
      const text = canonicalize(version.bundle);
      bundles[`${name}/${role}`] = {
        digest: sha256(text),
        signature_ok: verified(text, version.signature, keys)
      };
    }
  }
  return {
    body_is_canonical: canonicalize(parsed) === body,
    digest: sha256(canonical),
    signature_ok: verified(canonical, parsed.signature, keys),
    bundles
  };
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const request = JSON.parse(input);
  let answer;
  if (request.task === 'canonicalize') {
    answer = request.values.map((value) => Buffer.from(canonicalize(value), 'utf8').toString('base64'));
  } else if (request.task === 'envelope') {
    answer = envelope(request.body, request.keys);
  } else {
    throw new Error(`unknown task ${request.task}`);
  }
  process.stdout.write(JSON.stringify(answer));
});
