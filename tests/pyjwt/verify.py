#!/usr/bin/env python3
"""Verifies credential tokens against a published JWKS with PyJWT, an implementation
independent of the project's. Usage: verify.py <jwks.json> <token>...

Prints one JSON line per token: {"ok": true, "kid": ..., "claims": {...}} or
{"ok": false, "error": "..."}. Exit status 0 when every token verified, 1 otherwise."""
import json
import sys

import jwt


def main() -> int:
    with open(sys.argv[1]) as f:
        jwks = jwt.PyJWKSet.from_dict(json.load(f))
    keys = {key.key_id: key for key in jwks.keys}
    all_ok = True
    for token in sys.argv[2:]:
        try:
            kid = jwt.get_unverified_header(token)["kid"]
            if kid not in keys:
                raise jwt.InvalidKeyError(f"kid {kid!r} is not in the JWKS")
            claims = jwt.decode(
                token,
                key=keys[kid],
                algorithms=["EdDSA"],
                # As any verifier of ours must: the issuer and the audience are checked.
                issuer="rpc:auth-service",
                audience="rpc:gateway",
                options={"require": ["jti", "sub", "iat", "iss", "aud"]},
            )
            print(json.dumps({"ok": True, "kid": kid, "claims": claims}))
        except Exception as e:  # every failure is reported, none is fatal
            all_ok = False
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
