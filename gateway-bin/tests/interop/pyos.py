"""Desktop tokens made and checked the way abcdesktop's pyos does it.

pyos (oc/auth/jwtdesktop.py) encrypts the desktop address with pycryptodome and signs the claims
with PyJWT; the tests run this script with PyJWT 2.4.0 (pyos's pin) and pycryptodome to prove the
gateway accepts real pyos tokens and that keys-tool's tokens are real pyos tokens.

Usage:
  pyos.py mint SIGNING_PRIV PAYLOAD_PUB TARGET LIFETIME MODE   -> token on stdout
  pyos.py sign SIGNING_PRIV HASH_B64 LIFETIME                  -> token with a given hash
  pyos.py check TOKEN SIGNING_PUB PAYLOAD_PRIV MODE            -> decrypted target on stdout
  pyos.py versions                                             -> library versions
MODE: pkcs1 | oaep-sha1 | oaep-sha256
"""
import base64
import sys
import time

import Crypto
import jwt
from Crypto.Cipher import PKCS1_OAEP, PKCS1_v1_5
from Crypto.Hash import SHA1, SHA256
from Crypto.PublicKey import RSA


def read(path):
    with open(path) as f:
        return f.read()


def cipher(mode, key):
    if mode == "pkcs1":
        return PKCS1_v1_5.new(key)
    if mode == "oaep-sha1":
        return PKCS1_OAEP.new(key, hashAlgo=SHA1)
    if mode == "oaep-sha256":
        return PKCS1_OAEP.new(key, hashAlgo=SHA256)
    raise SystemExit("unknown mode " + mode)


def sign(signing_priv, hash_b64, lifetime):
    # Same dict insertion order as pyos: key, nfb (sic), hash, exp.
    now = int(time.time())
    claims = {"key": 0, "nfb": now, "hash": hash_b64, "exp": now + lifetime}
    return jwt.encode(claims, read(signing_priv), algorithm="RS256")


def main(argv):
    cmd = argv[1]
    if cmd == "versions":
        print(jwt.__version__, Crypto.__version__)
    elif cmd == "mint":
        signing_priv, payload_pub, target, lifetime, mode = argv[2:7]
        key = RSA.importKey(read(payload_pub))
        ciphertext = cipher(mode, key).encrypt(target.encode("ascii"))
        print(sign(signing_priv, base64.b64encode(ciphertext).decode("ascii"), int(lifetime)))
    elif cmd == "sign":
        signing_priv, hash_b64, lifetime = argv[2:5]
        print(sign(signing_priv, hash_b64, int(lifetime)))
    elif cmd == "check":
        token, signing_pub, payload_priv, mode = argv[2:6]
        claims = jwt.decode(token, read(signing_pub), algorithms=["RS256"])
        ciphertext = base64.b64decode(claims["hash"])
        key = RSA.importKey(read(payload_priv))
        if mode == "pkcs1":
            plain = cipher(mode, key).decrypt(ciphertext, None)
            if plain is None:
                raise SystemExit("pkcs1 decryption failed")
        else:
            plain = cipher(mode, key).decrypt(ciphertext)
        print(plain.decode("ascii"))
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
