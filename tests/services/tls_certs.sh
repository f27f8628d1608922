#!/usr/bin/env bash
# Makes the TLS test certificates once per build directory (ctest fixture `tls_certs`):
#   tls_certs.sh DIR
# DIR/ca.pem, ca.key          a test CA
# DIR/server.pem, server.key  localhost / 127.0.0.1 / ::1, signed by the CA
# DIR/chain.pem               server.pem followed by ca.pem (a file that holds a chain)
# DIR/server2.pem, server2.key  a second server certificate (the reload tests swap to it)
# DIR/client.pem, client.key  a client certificate signed by the CA
# DIR/other.key               a key that matches none of them
# DIR/spki.txt                base64 SHA-256 of server.pem's public key (Chromium's
#                             --ignore-certificate-errors-spki-list)
# ECDSA P-256 throughout: the handshake cost that a pool would choose today. Nothing is reused
# across runs unless every file is there.
set -euo pipefail
dir=${1:?usage: tls_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [[ -s spki.txt && -s chain.pem && -s client.pem && -s other.key && -s server2.pem ]]; then
  exit 0
fi
command -v openssl >/dev/null || { echo "tls_certs.sh: the openssl CLI is missing (scripts/deps.sh --test)" >&2; exit 1; }
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=KuPool Test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem
sign() { # name subject extensions
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
server_ext=$'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE'
sign server "/CN=localhost" "$server_ext"
sign server2 "/CN=localhost reloaded" "$server_ext"
sign client "/CN=kupool test miner" $'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE'
key other.key
cat server.pem ca.pem > chain.pem
openssl x509 -in server.pem -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | openssl enc -base64 > spki.txt
echo "tls_certs.sh: test certificates in $dir" >&2
